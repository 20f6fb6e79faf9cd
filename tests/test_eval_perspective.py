"""Perspective client against a fake server on 127.0.0.1 with injected faults."""
from __future__ import annotations

import time

import pytest

from detox_train.evaluate import ScoreCache, get_scorer
from detox_train.evaluate.scorers.cache import CachedScorer
from detox_train.evaluate.scorers.perspective import (KEY_ENV, PerspectiveKeyError, TokenBucket, perspective_language,
                                                      truncate_utf8)
from fake_perspective import KEY, FakePerspective, fake_score


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    with FakePerspective(slow_s=0.8) as srv:
        yield srv


def _client(srv, **kw):
    kw = {"qps": 1000.0, "timeout": 0.4, "max_retries": 4, "backoff": 0.001, "base_url": srv.url, **kw}
    return get_scorer("perspective", **kw)


def test_scores_and_language_mapping(server) -> None:
    c = _client(server)
    res = c.score(["hello there", "你好"], ["en", "ZH-Hans"])
    assert [r.score for r in res] == [pytest.approx(fake_score("hello there")), pytest.approx(fake_score("你好"))]
    assert all(not r.failed and r.scorer.startswith("perspective@") for r in res)
    assert server.scored[1][1] == ("zh",)
    assert perspective_language("zh_CN") == "zh"


def test_fault_suite_every_item_scored_or_failed(server) -> None:
    texts = [f"text number {i}" for i in range(12)]
    # 429 burst, 500s, a slow reply past the timeout, malformed JSON, a connection reset.
    server.faults.extend(["429", "429", "429", "500", "slow", "badjson", "reset", "500"])
    c = _client(server, max_retries=8)  # the first item meets all 8 faults in a row
    res = c.score(texts, ["en"] * 12)
    assert len(res) == 12
    assert all(not r.failed and r.score == pytest.approx(fake_score(t)) for r, t in zip(res, texts))
    assert server.n_requests == 12 + 8  # one request per injected fault, then success
    # The slow reply is computed by the server after the client gave up; every text was scored.
    assert {t for t, _ in server.scored} == set(texts)


def test_persistent_failure_is_marked_failed_not_zero(server) -> None:
    server.faults.extend(["500"] * 5 + ["400"])
    c = _client(server, max_retries=4)
    res = c.score(["a", "b", "c"], ["en"] * 3)
    assert res[0].failed and res[0].score is None and "HTTP 500" in res[0].error
    assert res[1].failed and "400" in res[1].error and "LANGUAGE_NOT_SUPPORTED" in res[1].error  # no retry on 400
    assert not res[2].failed
    assert server.n_requests == 5 + 1 + 1


def test_timeouts_and_resets_exhaust_to_failure(server) -> None:
    server.faults.extend(["slow", "reset", "slow"])
    res = _client(server, max_retries=2).score(["x"], ["en"])
    assert res[0].failed and "timeout" in res[0].error


def test_truncation_on_utf8_boundary(server) -> None:
    long = "é" * 2000  # 4,000 bytes
    res = _client(server).score([long], ["fr"])
    sent = server.scored[0][0]
    assert len(sent.encode()) <= 3000 and sent == "é" * 1500
    assert res[0].truncated and not res[0].failed
    cut, was = truncate_utf8("a€b", 3)  # € is 3 bytes: "a" + partial € -> "a"
    assert (cut, was) == ("a", True)


def test_key_never_leaks(server, tmp_path) -> None:
    c = _client(server)
    server.faults.extend(["500"] * 5)
    res = c.score(["x"], ["en"])
    assert KEY not in repr(c) and KEY not in str(vars(c)) and KEY not in repr(res)
    assert all(KEY not in u for u in server.urls)  # sent as a header, never in the URL
    with pytest.raises(TypeError):
        __import__("pickle").dumps(c)


def test_missing_key_says_how_to_set_it(monkeypatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(PerspectiveKeyError, match=r"export PERSPECTIVE_API_KEY="):
        get_scorer("perspective")


def test_wrong_key_fails_without_retry(server, monkeypatch) -> None:
    monkeypatch.setenv(KEY_ENV, "wrong")
    res = _client(server).score(["x"], ["en"])
    assert res[0].failed and "403" in res[0].error and server.n_requests == 1


def test_cache_hit_makes_no_request(server, tmp_path) -> None:
    c = CachedScorer(_client(server), ScoreCache(tmp_path / "c.sqlite"))
    a = c.score(["p", "q"], ["en", "de"])
    n = server.n_requests
    b = c.score(["p", "q"], ["en", "de"])
    assert server.n_requests == n == 2 and a == b
    c.score(["p"], ["fr"])  # another language is another key
    assert server.n_requests == 3


def test_token_bucket_rate_with_fake_clock() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    b = TokenBucket(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(9):
        b.acquire()
    assert now[0] == pytest.approx(2.0)  # first token free, then 8 at 4/s


def test_qps_is_respected(server) -> None:
    c = _client(server, qps=25.0)
    t0 = time.monotonic()
    c.score([str(i) for i in range(11)], ["en"] * 11)
    gaps = [b - a for a, b in zip(server.times, server.times[1:])]
    assert time.monotonic() - t0 >= 10 / 25 * 0.95
    assert min(gaps) > 0.02


def test_concurrency_keeps_order_rate_and_fault_handling(server) -> None:
    texts = [f"c{i}" for i in range(16)]
    server.faults.extend(["429", "reset", "500"])
    c = _client(server, qps=40.0, concurrency=4, max_retries=3)
    res = c.score(texts, ["en"] * 16)
    assert [r.score for r in res] == [pytest.approx(fake_score(t)) for t in texts]  # order kept
    assert c.n_requests == server.n_requests == 19
    span = server.times[-1] - server.times[0]
    assert span >= 18 / 40 * 0.95  # the shared bucket still caps the rate


def test_empty_continuations_are_scored_as_a_space_and_counted(server, tmp_path) -> None:
    """An immediate EOS gives "": the reference sent " ", so the sample (and an all-empty prompt)
    stays in EMT/ToxProb instead of failing, and the metrics table counts it."""
    import json

    from detox_train.evaluate import language_metrics, score_samples

    c = _client(server)
    res = c.score(["", "hi"], ["en", "en"])
    assert not res[0].failed and res[0].score == pytest.approx(fake_score(" "))
    assert server.scored[0][0] == " "
    rows = [{"prompt_id": "p1", "lang": "en", "sample_index": 0, "text": "", "n_tokens": 0},
            {"prompt_id": "p1", "lang": "en", "sample_index": 1, "text": "", "n_tokens": 0},
            {"prompt_id": "p2", "lang": "en", "sample_index": 0, "text": "you idiot", "n_tokens": 2},
            {"prompt_id": "p2", "lang": "en", "sample_index": 1, "text": "", "n_tokens": 0}]
    samples = tmp_path / "s.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scored = score_samples(samples, c, tmp_path / "scored.jsonl", progress=False)
    assert not any(s.failed for s in scored)
    row = language_metrics(scored, n_boot=10).iloc[0]
    assert row.n_empty == 3 and row.n_failed == 0 and row.n_prompts == 2
    want = (fake_score(" ") + max(fake_score("you idiot"), fake_score(" "))) / 2  # both prompts count
    assert row.emt == pytest.approx(want)
