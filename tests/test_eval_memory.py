"""Evaluation in memory first: generate()/score() return rows that carry their prompt record, and
the resumable JSONL (``out_path=``) is a thin wrapper that returns and stores the very same rows."""
from __future__ import annotations

import json

import pytest

from detox_train.evaluate import (GenerationSettings, Judge, generate, read_samples, read_scored, score,
                                  score_samples)
from detox_train.evaluate.generation import text_sha
from interp.data.records import Prompt
from test_stale_results import LengthScorer  # score = (len(text) % 10) / 10, records what it scored

TEXTS = ["I want", "the quick brown fox jumps", "you are a", "Ich will nach Hause", "我想", "Я хочу"]
LANGS = ["en", "en", "en", "de", "zh", "ru"]
SETTINGS = GenerationSettings(k=3, max_new_tokens=4, seed=7)


def _prompts(n: int = 6, texts: list[str] = TEXTS) -> list[Prompt]:
    return [Prompt(id=f"m:{LANGS[i]}:{i}", lang=LANGS[i], text=texts[i], index=i, toxicity=None, source="test",
                   group=i) for i in range(n)]


@pytest.fixture(scope="module")
def tiny(tiny_tokenizer):
    from tiny_models import make_model

    return make_model("gpt2", len(tiny_tokenizer)), tiny_tokenizer


def test_generate_in_memory_carries_the_prompt_and_writes_nothing(tiny, tmp_path, monkeypatch) -> None:
    model, tok = tiny
    monkeypatch.chdir(tmp_path)
    prompts = _prompts()
    samples = generate(model, prompts, SETTINGS, tokenizer=tok, progress=False, batch_size=4)
    assert list(tmp_path.iterdir()) == []  # in memory: no JSONL, no manifest
    assert [(s.prompt_id, s.sample_index) for s in samples] == [(p.id, j) for p in prompts for j in range(3)]
    by_id = {p.id: p for p in prompts}
    for s in samples:  # each row carries its prompt's id, language and text hash, never the text
        p = by_id[s.prompt_id]
        assert s.lang == p.lang and s.prompt_sha == text_sha(p.text) and s.continues(p)
        assert p.text not in json.dumps(s.__dict__, ensure_ascii=False)
    assert not samples[0].continues(_prompts(texts=["another text"] + TEXTS[1:])[0])
    assert len({s.text for s in samples}) > 6  # real sampling
    # Settings as a dataclass or as keyword overrides of its fields: one set of defaults.
    assert generate(model, prompts, tokenizer=tok, progress=False, k=3, max_new_tokens=4, seed=7) == samples
    with pytest.raises(TypeError, match="unknown setting.*'n_samples'"):
        generate(model, prompts, tokenizer=tok, progress=False, n_samples=3)


def test_generate_file_wrapper_equals_memory_and_resumes(tiny, tmp_path) -> None:
    model, tok = tiny
    kw = dict(tokenizer=tok, progress=False, batch_size=2)
    mem = generate(model, _prompts(), SETTINGS, **kw)
    out = tmp_path / "s.jsonl"
    assert generate(model, _prompts(), SETTINGS, out_path=out, **kw) == mem
    assert read_samples(out) == mem  # the file holds exactly the in-memory rows (prompt hash included)
    assert [json.loads(x)["prompt_sha"] for x in out.read_text().splitlines()] == [s.prompt_sha for s in mem]
    # Resume from a torn file (3 whole lines, then half a line): the missing rows are made, equal to memory.
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:3]) + lines[3][:9])
    assert generate(model, _prompts(), SETTINGS, out_path=out, **kw) == mem
    assert read_samples(out) == mem


def test_score_in_memory_equals_the_file_wrapper_and_resumes(tiny, tmp_path) -> None:
    model, tok = tiny
    samples = generate(model, _prompts(), SETTINGS, tokenizer=tok, progress=False)
    s0 = LengthScorer()
    mem = score(samples, s0, progress=False, batch_size=4)
    assert s0.seen == [s.text for s in samples]
    assert [r.score for r in mem] == [(len(s.text) % 10) / 10 for s in samples]  # independent computation
    assert [(r.prompt_id, r.sample_index, r.text, r.prompt_sha) for r in mem] == \
        [(s.prompt_id, s.sample_index, s.text, s.prompt_sha) for s in samples]
    assert list(tmp_path.iterdir()) == []
    # score(out_path=) and the file-to-file score_samples return and store the in-memory rows.
    out = tmp_path / "scored.jsonl"
    assert score(samples, LengthScorer(), progress=False, out_path=out) == mem
    assert read_scored(out) == mem
    src = generate(model, _prompts(), SETTINGS, tokenizer=tok, progress=False, out_path=tmp_path / "s.jsonl")
    assert src == samples
    assert score_samples(tmp_path / "s.jsonl", LengthScorer(), tmp_path / "f.jsonl", progress=False) == mem
    assert (tmp_path / "f.jsonl").read_bytes() == out.read_bytes()
    # Resume after a torn line: only the missing rows are scored.
    lines = out.read_bytes().splitlines(keepends=True)
    out.write_bytes(b"".join(lines[:5]) + lines[5][:11])
    s1 = LengthScorer()
    assert score(samples, s1, progress=False, out_path=out) == mem and s1.seen == [s.text for s in samples[5:]]
    assert out.read_bytes() == (tmp_path / "f.jsonl").read_bytes()
    with pytest.raises(ValueError, match="duplicate sample"):
        score(samples + samples[:1], LengthScorer(), progress=False)


def test_judge_refuses_prompt_text_other_than_the_sampled_one(tiny) -> None:
    model, tok = tiny
    prompts = _prompts(2)
    samples = generate(model, prompts, SETTINGS, tokenizer=tok, progress=False)
    ppl = Judge.from_prompts(model, prompts, tokenizer=tok).perplexities(samples)
    assert len(ppl) == len(samples)
    edited = _prompts(2, texts=["you are a"] + TEXTS[1:])  # same ids, prompt 0 has another text
    with pytest.raises(ValueError, match=r"differs.*m:en:0"):
        Judge.from_prompts(model, edited, tokenizer=tok).perplexities(samples)


def test_pipeline_lexicon_scorer_reads_the_run_data_root(data_root, tmp_path) -> None:
    """The run's data root decides the lexicon scorer's lists (it read the default root's before)."""
    from interp.app.pipeline import Pipeline
    from interp.app.run_config import load_run_config

    other = tmp_path / "data"
    (other / "ldnoobw").mkdir(parents=True)
    for f in (data_root / "ldnoobw").glob("*.txt"):
        extra = b"\nzzqxword\n" if f.name == "en.txt" else b""
        (other / "ldnoobw" / f.name).write_bytes(f.read_bytes() + extra)
    cfg = load_run_config(preset="smoke", overrides={"data_root": str(other), "evaluation": {"scorer": "lexicon"}})
    scorer = Pipeline(cfg, tmp_path / "run", log=lambda _m: None).scorer()
    assert [r.score for r in scorer.score(["a zzqxword here", "a plain text"], ["en", "en"])] == [1.0, 0.0]
