"""Perspective API (commentanalyzer) client: token-bucket rate limit, retries with backoff,
3,000-byte truncation on a UTF-8 boundary, language mapping, and an API key that is read from
``$PERSPECTIVE_API_KEY`` only and never logged, stored or shown in errors/reprs.

The key travels in the ``X-Goog-Api-Key`` header (not the URL) so that no URL, log line or
exception message can carry it.
"""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Any, Callable, Sequence

from .base import ScoreResult, check_batch

DEFAULT_URL = "https://commentanalyzer.googleapis.com/v1alpha1/comments:analyze"
KEY_ENV = "PERSPECTIVE_API_KEY"
MAX_TEXT_BYTES = 3000
#: What an empty text is sent as. Perspective rejects empty comments; the paper's reference code
#: sent " " for an empty continuation (an immediate EOS), so such samples keep counting in EMT/ToxProb.
EMPTY_TEXT = " "


class PerspectiveKeyError(ValueError):
    """The API key is missing."""


class PerspectiveUnreachableError(ValueError):
    """Nothing could be scored: the endpoint refused or timed out on every attempt so far."""


class _Secret:
    """Holds the API key; its repr/str never show it (so vars() or a traceback dump cannot leak it)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__


def truncate_utf8(text: str, max_bytes: int = MAX_TEXT_BYTES) -> tuple[str, bool]:
    """Return (text cut to at most ``max_bytes`` UTF-8 bytes on a character boundary, was_cut)."""
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text, False
    return raw[:max_bytes].decode("utf-8", errors="ignore"), True


def perspective_language(lang: str) -> str:
    """Return Perspective's code for one of our language codes (zh-Hans/zh_CN -> zh)."""
    from interp.data.languages import PERSPECTIVE_CODES, normalize_language

    code = normalize_language(lang)
    return PERSPECTIVE_CODES.get(code, code)


class TokenBucket:
    """Token bucket of capacity ``burst`` refilled at ``rate`` tokens/s; ``acquire`` blocks."""

    def __init__(self, rate: float, burst: float = 1.0, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if rate <= 0:
            raise ValueError(f"qps must be > 0, got {rate}")
        self.rate, self.burst = float(rate), float(burst)
        self._clock, self._sleep = clock, sleep
        self._tokens, self._t = self.burst, clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._t) * self.rate)
            self._t = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)


class PerspectiveScorer:
    """Scores texts with Perspective; ``score`` is the first requested attribute's summary score."""

    id = "perspective"

    def __init__(self, *, attributes: Sequence[str] = ("TOXICITY",), qps: float = 1.0,
                 base_url: str = DEFAULT_URL, timeout: float = 10.0, max_retries: int = 6,
                 backoff: float = 1.0, max_backoff: float = 60.0, max_bytes: int = MAX_TEXT_BYTES,
                 concurrency: int = 1, max_total_s: float | None = None) -> None:
        key = os.environ.get(KEY_ENV, "").strip()
        if not key:
            raise PerspectiveKeyError(
                f"the Perspective scorer needs an API key in the environment variable {KEY_ENV}: run "
                f"`export {KEY_ENV}=<your key>` (keys: https://developers.perspectiveapi.com/s/docs-get-started), "
                "or use the offline scorer (--scorer e5)")
        if not attributes:
            raise ValueError("attributes must name at least one Perspective attribute, e.g. TOXICITY")
        self._key = _Secret(key)
        self.attributes = tuple(a.upper() for a in attributes)
        self.base_url, self.timeout, self.max_retries = base_url, float(timeout), int(max_retries)
        self.backoff, self.max_backoff, self.max_bytes = float(backoff), float(max_backoff), int(max_bytes)
        self.bucket = TokenBucket(qps)
        self.version = "v1alpha1:" + "+".join(self.attributes)
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        # Requests in flight at once; the shared token bucket still caps the rate, so this only
        # matters when the API's latency exceeds 1/qps.
        self.concurrency = int(concurrency)
        self.n_requests = 0
        self._count_lock = threading.Lock()
        # Total-time limit for the scorer's life: once past it, remaining texts fail fast (marked failed).
        self.max_total_s = None if max_total_s is None else float(max_total_s)
        self._t0 = time.monotonic()
        self._n_ok = 0
        self._warned = False
        import httpx

        self._client = httpx.Client(timeout=httpx.Timeout(self.timeout))

    def __repr__(self) -> str:
        from interp.core.artifacts import redact_url

        return (f"PerspectiveScorer(attributes={list(self.attributes)}, qps={self.bucket.rate}, "
                f"concurrency={self.concurrency}, base_url={redact_url(self.base_url)!r}, key=<from ${KEY_ENV}>)")

    @property
    def max_batch(self) -> int:
        """Texts per scoring call that keep progress per item (one request round of ``concurrency``)."""
        return self.concurrency

    def __getstate__(self) -> Any:
        raise TypeError("PerspectiveScorer holds a secret and cannot be pickled")

    def close(self) -> None:
        self._client.close()

    # -- one request with retries
    def _score_one(self, text: str, lang: str) -> ScoreResult:
        import httpx

        key = f"{self.id}@{self.version}"
        from interp.data.languages import language_info

        if language_info(lang).perspective is None:  # no request: it could only come back 400
            return ScoreResult.fail(f"Perspective has no TOXICITY model for language {lang!r}", key)
        text, cut = truncate_utf8(text, self.max_bytes)
        text = text or EMPTY_TEXT
        body = {"comment": {"text": text}, "languages": [perspective_language(lang)],
                "requestedAttributes": {a: {} for a in self.attributes}, "doNotStore": True}
        last = "no attempt"
        transport = True  # every failure so far was a refused/unanswered connection attempt
        for attempt in range(self.max_retries + 1):
            if self.max_total_s is not None and time.monotonic() - self._t0 > self.max_total_s:
                return ScoreResult.fail(f"time limit of {self.max_total_s:g}s for the scoring run reached "
                                        f"(last error: {last})", key)
            if attempt:
                self._first_failure(last, attempt)
                time.sleep(min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))
            self.bucket.acquire()
            with self._count_lock:
                self.n_requests += 1
            try:
                r = self._client.post(self.base_url, json=body, headers={"X-Goog-Api-Key": self._key.reveal()})
            except (httpx.ConnectError, httpx.ConnectTimeout) as e:  # no connection at all
                last = f"cannot connect ({type(e).__name__})"
                continue
            except httpx.TimeoutException:
                transport = False
                last = f"timeout after {self.timeout:g}s"
                continue
            except httpx.TransportError as e:  # connection reset, protocol errors
                transport = False
                last = f"connection error ({type(e).__name__})"
                continue
            transport = False
            if r.status_code == 429 or r.status_code >= 500:
                last = f"HTTP {r.status_code}"
                retry_after = r.headers.get("retry-after")
                if retry_after and retry_after.replace(".", "", 1).isdigit():
                    time.sleep(min(self.max_backoff, float(retry_after)))
                continue
            if r.status_code != 200:  # 400 (e.g. unsupported language), 403: retrying cannot help
                return ScoreResult.fail(f"HTTP {r.status_code}: {_error_message(r)}", key)
            try:
                data = r.json()
                value = float(data["attributeScores"][self.attributes[0]]["summaryScore"]["value"])
            except (json.JSONDecodeError, ValueError, KeyError, TypeError) as e:
                last = f"malformed response ({type(e).__name__})"
                continue
            if not 0.0 <= value <= 1.0:
                last = f"score {value} outside [0, 1]"
                continue
            with self._count_lock:
                self._n_ok += 1
            return ScoreResult.ok(value, key, truncated=cut)
        if transport and self._n_ok == 0:
            from interp.core.artifacts import redact_url

            raise PerspectiveUnreachableError(
                f"Perspective endpoint {redact_url(self.base_url)} is unreachable ({last}, {self.max_retries + 1} "
                "attempts on the first text); check the network or --perspective-url, then rerun (scores already "
                "written are kept)")
        return ScoreResult.fail(f"gave up after {self.max_retries + 1} attempts: {last}", key)

    def _first_failure(self, last: str, attempt: int) -> None:
        """Say once, at the first failed request, what failed and how long retrying may take."""
        if self._warned:
            return
        self._warned = True
        import sys

        from interp.core.artifacts import redact_url

        wait = sum(min(self.max_backoff, self.backoff * 2 ** i) for i in range(self.max_retries))
        print(f"perspective: request to {redact_url(self.base_url)} failed ({last}); retrying up to "
              f"{self.max_retries} times per text (up to {wait:.0f}s of back-off each)", file=sys.stderr)

    def score(self, texts: list[str], langs: list[str]) -> list[ScoreResult]:
        """Return one result per text; items that keep failing are marked failed, never 0."""
        langs = check_batch(texts, langs)
        if self.concurrency == 1 or len(texts) < 2:
            return [self._score_one(t, lang) for t, lang in zip(texts, langs)]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            return list(pool.map(self._score_one, texts, langs))


def _error_message(r: Any) -> str:
    """Return the server's error message (bounded), without echoing request details."""
    try:
        msg = str(r.json().get("error", {}).get("message", ""))
    except (ValueError, AttributeError):
        msg = ""
    return (msg or r.reason_phrase or "error")[:200]
