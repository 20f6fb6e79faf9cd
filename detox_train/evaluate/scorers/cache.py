"""Persistent score cache in SQLite keyed by (scorer id@version, language, sha256(text)).

Only successful scores are cached, so failed items are retried on the next run. Texts are stored
as hashes, never verbatim (RTP-LX prompts must not leak into files that may travel).
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from pathlib import Path

from .base import ScoreResult

_SCHEMA = """CREATE TABLE IF NOT EXISTS scores (
  scorer TEXT NOT NULL, lang TEXT NOT NULL, text_sha256 TEXT NOT NULL,
  score REAL NOT NULL, truncated INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (scorer, lang, text_sha256))"""


class ScoreCacheError(ValueError):
    """The cache file cannot be opened or is not a score cache."""


def text_key(text: str) -> str:
    """Return the sha256 hex digest of a text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ScoreCache:
    """SQLite (WAL) cache of scores; ``get`` returns hits, ``put`` stores successes."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        hint = f"delete it or pass another cache path (--cache FILE)"
        if self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK):
            raise ScoreCacheError(f"{self.path}: score cache is not readable/writable by this user; "
                                  f"fix its permissions, {hint}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
            cols = {r[1] for r in self._db.execute("PRAGMA table_info(scores)")}
            if not {"scorer", "lang", "text_sha256", "score"} <= cols:
                raise ScoreCacheError(f"{self.path}: table 'scores' has columns {sorted(cols)}, "
                                      f"not a score cache; {hint}")
            self._db.commit()
        except sqlite3.DatabaseError as e:
            raise ScoreCacheError(f"{self.path}: unreadable or corrupt score cache ({e}); {hint}") from e

    def get(self, scorer: str, langs: list[str], texts: list[str]) -> list[ScoreResult | None]:
        """Return the cached result per (lang, text), or None for a miss."""
        out: list[ScoreResult | None] = []
        with self._lock:
            for lang, text in zip(langs, texts):
                row = self._db.execute(
                    "SELECT score, truncated FROM scores WHERE scorer=? AND lang=? AND text_sha256=?",
                    (scorer, lang, text_key(text))).fetchone()
                out.append(None if row is None else ScoreResult.ok(row[0], scorer, truncated=bool(row[1])))
        return out

    def put(self, langs: list[str], texts: list[str], results: list[ScoreResult]) -> int:
        """Store the successful results; return how many were stored."""
        rows = [(r.scorer, lang, text_key(t), float(r.score), int(r.truncated))
                for lang, t, r in zip(langs, texts, results) if not r.failed and r.score is not None]
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?)", rows)
            self._db.commit()
        return len(rows)

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __repr__(self) -> str:
        return f"ScoreCache({str(self.path)!r})"


class CachedScorer:
    """A scorer wrapped by a :class:`ScoreCache`: hits make no call to the inner scorer."""

    def __init__(self, scorer: "object", cache: ScoreCache) -> None:
        from .base import scorer_key

        self.inner = scorer
        self.cache = cache
        self.id = scorer.id  # type: ignore[attr-defined]
        self.version = scorer.version  # type: ignore[attr-defined]
        self._key = scorer_key(scorer)  # type: ignore[arg-type]

    def score(self, texts: list[str], langs: list[str]) -> list[ScoreResult]:
        """Return results for ``texts``, calling the inner scorer only for cache misses."""
        from .base import check_batch

        langs = check_batch(texts, langs)
        results = self.cache.get(self._key, langs, texts)
        miss = [i for i, r in enumerate(results) if r is None]
        if miss:
            new = self.inner.score([texts[i] for i in miss], [langs[i] for i in miss])  # type: ignore[attr-defined]
            self.cache.put([langs[i] for i in miss], [texts[i] for i in miss], new)
            for i, r in zip(miss, new):
                results[i] = r
        return results  # type: ignore[return-value]
