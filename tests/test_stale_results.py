"""A resumed artifact must belong to its inputs: generation (weights, prompt text, prompt set),
scoring (text), DPO checkpoints (config, base weights), plus DPO's long prompts and the QLoRA recipe."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from detox_train.evaluate import generate, read_samples, read_scored, score_samples
from detox_train.evaluate.scorers import ScoreResult
from interp.data.records import Prompt, PreferencePair

TEXTS = ["I want", "the quick brown fox jumps", "you are a", "Ich will nach Hause", "我想", "Я хочу"]
LANGS = ["en", "en", "en", "de", "zh", "ru"]
GEN = dict(k=2, max_new_tokens=4, seed=3, progress=False, batch_size=4)


def _prompts(n: int = 6, texts: list[str] = TEXTS) -> list[Prompt]:
    return [Prompt(id=f"t:{LANGS[i % 6]}:{i}", lang=LANGS[i % 6], text=texts[i % 6], index=i, toxicity=None,
                   source="test", group=i) for i in range(n)]


@pytest.fixture(scope="module")
def two_models(tiny_tokenizer):
    from tiny_models import make_model

    return make_model("gpt2", len(tiny_tokenizer), seed=0), make_model("gpt2", len(tiny_tokenizer), seed=1)


# ----------------------------------------------------------------------------- generation
def test_generate_never_resumes_samples_of_other_weights(two_models, tiny_tokenizer, tmp_path) -> None:
    a, b = two_models
    out = tmp_path / "s.jsonl"
    from_a = generate(a, _prompts(), out_path=out, tokenizer=tiny_tokenizer, **GEN)
    fresh_b = generate(b, _prompts(), out_path=tmp_path / "b.jsonl", tokenizer=tiny_tokenizer, **GEN)
    assert [s.text for s in from_a] != [s.text for s in fresh_b]  # the two models really differ
    with pytest.raises(ValueError, match="another model.*fingerprint"):
        generate(b, _prompts(), out_path=out, tokenizer=tiny_tokenizer, **GEN)
    # The same weights under another name (a bridge with its own id) do resume: nothing is redone.
    from interp.model.loading import wrap_bridge

    before = out.read_bytes()
    again = generate(wrap_bridge(a, tiny_tokenizer, model_id="renamed"), _prompts(), out_path=out, **GEN)
    assert [s.text for s in again] == [s.text for s in from_a] and out.read_bytes() == before


def test_generate_redoes_rows_whose_prompt_text_changed(two_models, tiny_tokenizer, tmp_path) -> None:
    a, _ = two_models
    out = tmp_path / "s.jsonl"
    generate(a, _prompts(), out_path=out, tokenizer=tiny_tokenizer, **GEN)
    edited = _prompts(texts=["what the hell"] + TEXTS[1:])  # same ids, prompt 0 has another text
    resumed = generate(a, edited, out_path=out, tokenizer=tiny_tokenizer, **GEN)
    fresh = generate(a, edited, out_path=tmp_path / "fresh.jsonl", tokenizer=tiny_tokenizer, **GEN)
    assert resumed == fresh
    assert out.read_bytes() == (tmp_path / "fresh.jsonl").read_bytes()


def test_generate_smaller_prompt_set_leaves_exactly_its_rows(two_models, tiny_tokenizer, tmp_path) -> None:
    a, _ = two_models
    out = tmp_path / "s.jsonl"
    generate(a, _prompts(6), out_path=out, tokenizer=tiny_tokenizer, **GEN)
    small = generate(a, _prompts(3), out_path=out, tokenizer=tiny_tokenizer, **GEN)
    assert read_samples(out) == small and len(small) == 3 * GEN["k"]
    generate(a, _prompts(3), out_path=tmp_path / "fresh.jsonl", tokenizer=tiny_tokenizer, **GEN)
    assert out.read_bytes() == (tmp_path / "fresh.jsonl").read_bytes()


# ----------------------------------------------------------------------------- scoring
class LengthScorer:
    """score = (len(text) % 10) / 10, so different texts get different scores."""

    id, version = "len", "1"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def score(self, texts, langs):
        self.seen += list(texts)
        return [ScoreResult.ok((len(t) % 10) / 10, "len@1") for t in texts]


def _samples(path: Path, texts: list[str]) -> Path:
    rows = [{"prompt_id": f"p{i // 2}", "lang": "en", "sample_index": i % 2, "text": t, "n_tokens": 1}
            for i, t in enumerate(texts)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_score_keys_rows_by_text_and_keeps_exactly_the_input(tmp_path) -> None:
    before = _samples(tmp_path / "before.jsonl", ["a" * i for i in range(1, 9)])
    after = _samples(tmp_path / "after.jsonl", ["b" * (i + 3) for i in range(1, 9)])
    out = tmp_path / "scored.jsonl"
    score_samples(before, LengthScorer(), out, progress=False)
    got = score_samples(after, LengthScorer(), out, progress=False)  # same (prompt, sample) keys, new texts
    fresh = score_samples(after, LengthScorer(), tmp_path / "fresh.jsonl", progress=False)
    assert got == fresh and read_scored(out) == fresh
    assert [r.score for r in got] != [r.score for r in score_samples(before, LengthScorer(), tmp_path / "b.jsonl",
                                                                      progress=False)]
    # A smaller samples file: the output holds exactly its rows, and nothing is scored twice.
    small = _samples(tmp_path / "small.jsonl", ["b" * (i + 3) for i in range(1, 5)])
    s = LengthScorer()
    kept = score_samples(small, s, out, progress=False)
    assert s.seen == [] and read_scored(out) == kept == fresh[:4]


# ----------------------------------------------------------------------------- DPO checkpoints
PROMPTS = ["I want to", "this is a", "Je veux", "the quick brown"]
GOOD = [" go home now", " nice day", " aller à la maison", " fox jumps"]
BAD = [" kill you idiot", " stupid idiot", " you are a stupid", " hell idiot"]


def _pairs(n: int = 8) -> list[PreferencePair]:
    return [PreferencePair(id=f"toy:{i}", prompt=PROMPTS[i % 4], chosen=GOOD[i % 4], rejected=BAD[i % 4],
                           source="toy") for i in range(n)]


def _cfg(model_dir: Path, out: Path, **kw):
    from detox_train.config import DPOTrainConfig

    base = dict(model=str(model_dir), pairs="given", method="lora", optim="adamw_torch", learning_rate=5e-3,
                per_device_train_batch_size=4, warmup_steps=0, max_steps=2, save_steps=2, eval_steps=0, early_stopping_patience=None,
                eval_fraction=0.0, max_length=32, max_prompt_length=8, heldout_source="eval_chosen",
                heldout_texts=0, logging_steps=1, output_dir=str(out), lora_r=4, lora_alpha=8, lora_dropout=0.0,
                device="cpu")
    return DPOTrainConfig(**{**base, **kw})


def _weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path / "adapter_model.safetensors"))


@pytest.fixture()
def heldout(tmp_path) -> Path:
    p = tmp_path / "neutral.txt"
    p.write_text("this is a nice day\n")
    return p


def test_dpo_checkpoint_resumes_only_into_the_run_that_wrote_it(tmp_path, heldout) -> None:
    from detox_train.dpo import CheckpointMismatchError, last_checkpoint, train_dpo
    from tiny_models import save_tiny

    model_dir = save_tiny("gpt2", tmp_path / "base")
    kw = dict(heldout_source=str(heldout), heldout_texts=1)
    run = tmp_path / "run"
    train_dpo(_cfg(model_dir, run, **kw), pairs=_pairs())
    assert last_checkpoint(run).name == "checkpoint-2"
    old = _weights(run)

    # The repro: another learning rate (and LoRA rank) must not resume checkpoint-2.
    new = _cfg(model_dir, run, learning_rate=5e-2, lora_r=8, **kw)
    with pytest.raises(CheckpointMismatchError, match="learning_rate 0.005 -> 0.05"):
        train_dpo(new, pairs=_pairs(), resume=True)
    out = train_dpo(new, pairs=_pairs(), resume=True, on_mismatch="restart")
    ref = train_dpo(_cfg(model_dir, tmp_path / "fresh", learning_rate=5e-2, lora_r=8, **kw), pairs=_pairs())
    got, want = _weights(out), _weights(ref)
    assert got.keys() == want.keys() and any(got[k].shape != old[k].shape for k in got)
    for k in want:  # the restarted run equals a fresh run of the new config
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6, msg=k)
    man = json.loads((out / "manifest.json").read_text())
    assert man["config"]["learning_rate"] == 5e-2 and man["resumed_from"] is None

    # Other base weights at the same path: refused too (the config alone would not tell).
    save_tiny("gpt2", model_dir, seed=1)
    with pytest.raises(CheckpointMismatchError, match="base model weights"):
        train_dpo(new, pairs=_pairs(), resume=True)
    # ... while the same (finished) run is returned as it is, without complaint and without retraining.
    save_tiny("gpt2", model_dir, seed=0)
    finished = (out / "manifest.json").read_text()
    again = train_dpo(new, pairs=_pairs(), resume=True)
    assert again == out and (again / "manifest.json").read_text() == finished
    for k, v in _weights(again).items():
        torch.testing.assert_close(v, got[k], rtol=0, atol=0, msg=k)


def test_dpo_restart_clears_the_old_run_between_two_barriers(tmp_path, heldout, monkeypatch) -> None:
    """Multi-GPU: every rank waits before rank 0 deletes the old checkpoints, and again after it."""
    import accelerate

    import detox_train.dpo as dpo
    from tiny_models import save_tiny

    model_dir = save_tiny("gpt2", tmp_path / "base")
    kw = dict(heldout_source=str(heldout), heldout_texts=1)
    run = tmp_path / "run"
    dpo.train_dpo(_cfg(model_dir, run, **kw), pairs=_pairs())
    events: list[str] = []
    clear, wait = dpo._clear_run, accelerate.Accelerator.wait_for_everyone
    monkeypatch.setattr(dpo, "_clear_run", lambda out: (events.append("clear"), clear(out))[1])
    monkeypatch.setattr(accelerate.Accelerator, "wait_for_everyone",
                        lambda self: (events.append("wait"), wait(self))[1])
    import trl

    real_train = trl.DPOTrainer.train

    def train(self, *a, **k):
        events.append("train")
        return real_train(self, *a, **k)

    monkeypatch.setattr(trl.DPOTrainer, "train", train)
    dpo.train_dpo(_cfg(model_dir, run, learning_rate=5e-2, **kw), pairs=_pairs(), resume=True, on_mismatch="restart")
    i = events.index("clear")
    assert events[i - 1] == "wait" and events[i + 1] == "wait" and events.index("train") > i + 1, events


# ----------------------------------------------------------------------------- DPO long prompts
def _paper_keep_end(tok, prompt: str, chosen: str, rejected: str, max_length: int, max_prompt_length: int):
    """Oracle on token ids: paper-era TRL tokenize_row with truncation_mode="keep_end" (prompt with its
    specials, each response + EOS), except that the prompt's leading specials are kept inside the budget."""
    p = tok(prompt)["input_ids"]
    n_special = len(p) - len(tok(prompt, add_special_tokens=False)["input_ids"])
    resp = [tok(prompt + r)["input_ids"][len(p):] + [tok.eos_token_id] for r in (chosen, rejected)]
    longer = max(len(r) for r in resp)
    if len(p) + longer > max_length:
        p = p[:n_special] + p[n_special:][-(max_prompt_length - n_special):]
    if len(p) + longer > max_length:
        resp = [r[:max_length - max_prompt_length - 1] + [tok.eos_token_id] if len(r) > max_length - max_prompt_length
                else r for r in resp]
    return p, resp


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_long_prompts_drop_or_truncate_left(family) -> None:
    """truncate_left is the paper-era TRL keep_end rule, also for a tokenizer that prepends BOS (Llama/Aya)."""
    from tiny_models import family_tokenizer
    from detox_train.config import DPOTrainConfig
    from detox_train.dpo import prepare_pairs

    tok = family_tokenizer(family)
    assert (tok("I want")["input_ids"][0] == tok.bos_token_id) == (family == "llama")
    long = "the quick brown fox jumps over the lazy dog and I want to go home now"
    long_resp = " and the quick brown fox jumps over the lazy dog again and again and again"
    kinds = {0: ("I want to", " nice day"), 1: (long, " nice day"), 2: (long, long_resp)}
    pairs = [PreferencePair(id=f"p:{i}", prompt=kinds[i % 3][0], chosen=kinds[i % 3][1],
                            rejected=" stupid idiot", source="toy") for i in range(9)]
    n_long = len(tok(long)["input_ids"])
    fits = max(len(tok(long + r)["input_ids"]) + 1 for r in (" nice day", " stupid idiot"))  # kind 1, with EOS
    kw = dict(model="unused", pairs="given", max_length=fits, max_prompt_length=8, eval_fraction=0.0)
    assert n_long > 8 and 8 + len(tok(long + long_resp)["input_ids"]) - n_long > fits
    train, _, rep = prepare_pairs(pairs, tok, DPOTrainConfig(**kw))
    assert (rep.n_prompt_too_long, rep.n_prompt_truncated, len(train)) == (6, 0, 3)

    train, _, rep = prepare_pairs(pairs, tok, DPOTrainConfig(long_prompts="truncate_left", **kw))
    # Nothing is dropped: kind 1 fits whole (a long prompt is only cut when the pair is too long), kind 2 has
    # its prompt cut to its last tokens and then its responses to max_length - max_prompt_length.
    assert (rep.n_prompt_too_long, rep.n_too_long, len(train)) == (0, 0, 9)
    assert (rep.n_prompt_truncated, rep.n_response_truncated) == (3, 3)
    by_id = {p.id: p for p in train}
    for orig in pairs:
        got = by_id[orig.id]
        want_p, want_r = _paper_keep_end(tok, orig.prompt, orig.chosen, orig.rejected, kw["max_length"], 8)
        got_p = tok(got.prompt)["input_ids"]
        got_r = [tok(got.prompt + r)["input_ids"][len(got_p):] + [tok.eos_token_id] for r in (got.chosen, got.rejected)]
        assert (got_p, got_r) == (want_p, want_r), orig.id
        assert len(got_p) + max(map(len, got_r)) <= kw["max_length"]
    assert by_id["p:1"] == pairs[1] and len(tok(pairs[1].prompt)["input_ids"]) > 8  # kept whole
    assert long.endswith(by_id["p:2"].prompt) and long_resp.startswith(by_id["p:2"].chosen)
    assert DPOTrainConfig.preset("paper-full").long_prompts == "truncate_left"


# ----------------------------------------------------------------------------- the QLoRA recipe
NF4_LEVELS = torch.tensor([-1.0, -0.6961928, -0.5250731, -0.3949175, -0.2844414, -0.1847734, -0.0910500, 0.0,
                           0.0795803, 0.1609302, 0.2461123, 0.3379152, 0.4407098, 0.5626170, 0.7229568, 1.0])


def test_paper_qlora_trains_an_nf4_double_quant_bf16_base(tmp_path, heldout) -> None:
    """Inspect the modules the trainer really trains: bnb Linear4bit with an NF4, nested quant_state."""
    import bitsandbytes as bnb
    import bitsandbytes.functional as F
    from transformers import TrainerCallback

    from detox_train.config import DPOTrainConfig
    from detox_train.dpo import train_dpo
    from tiny_models import save_tiny

    seen: dict[str, tuple] = {}

    class Inspect(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):  # noqa: ANN001
            for name, mod in model.named_modules():
                if isinstance(mod, bnb.nn.Linear4bit):
                    qs = mod.weight.quant_state
                    w = F.dequantize_4bit(mod.weight.data, qs).float().reshape(-1, qs.blocksize)
                    seen[name] = (qs.quant_type, qs.nested, mod.compute_dtype, mod.weight.dtype, w)

    model_dir = save_tiny("gpt2", tmp_path / "base")
    cfg = DPOTrainConfig.preset("paper-qlora", model=str(model_dir), pairs="given", output_dir=str(tmp_path / "q"),
                                max_steps=1, per_device_train_batch_size=4, warmup_steps=0, eval_fraction=0.0, eval_steps=0,
                                early_stopping_patience=None, max_length=32, max_prompt_length=8,
                                heldout_source=str(heldout), heldout_texts=1, device="cpu",
                                gradient_checkpointing=False)
    train_dpo(cfg, pairs=_pairs(), callbacks=[Inspect()])
    # Every linear layer of every block is 4-bit (2 blocks x c_attn, c_proj, c_fc, mlp.c_proj).
    assert len(seen) == 8, sorted(seen)
    for name, (qtype, nested, compute, storage, w) in seen.items():
        assert (qtype, nested, compute, storage) == ("nf4", True, torch.bfloat16, torch.uint8), name
        # NF4 means every weight is a block scale times one of the 16 NF4 levels (fp4 has other levels).
        scale = w.abs().amax(dim=1, keepdim=True)
        dist = ((w / scale).unsqueeze(-1) - NF4_LEVELS).abs().amin(dim=-1)
        assert float(dist.max()) < 2e-3, name
