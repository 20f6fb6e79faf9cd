"""The embedded default model: hold-out discipline, determinism, resume, the smoke build, the cache."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from interp.data import records, rtplx, sources
from interp.data import split as split_mod
from interp.default_model.build import _threads, build_default_model, default_model_dir, is_built
from interp.default_model.corpus import build_corpus, tokenize_stream, train_tokenizer
from interp.default_model.recipe import RECIPES, get_recipe, recipe_hash
from interp.model.lm_loss import lm_loss
from interp.default_model.train import batch_at, lm_loss_by_language, lr_at, make_model, to_blocks, train

SMOKE = RECIPES["smoke"]
# A micro run on the smoke model: 24 steps, so training twice stays well under a second or two.
MICRO = dataclasses.replace(SMOKE, token_budget=SMOKE.batch_size * SMOKE.ctx * 24, eval_every=12)


@pytest.fixture(scope="session")
def full_corpus(data_root):
    """The uncapped default-preset corpus (the hold-out check must see every document)."""
    return build_corpus(RECIPES["standard"], data_root)


@pytest.fixture(scope="session")
def smoke_dir(tmp_path_factory, data_root) -> Path:
    """One smoke build per session, placed where the cache would put it."""
    root = tmp_path_factory.mktemp("xdetox_cache")
    from interp.default_model.build import resolve_preset

    out = root / "default-model" / resolve_preset("smoke", data_root)[2].name  # recipe + data tag
    build_default_model(SMOKE, data_root, out, heldout_loss=lm_loss, progress=False)
    return out


@pytest.fixture(scope="session")
def micro_data(full_corpus):
    """(tokenizer, train blocks, val blocks) for micro training runs."""
    docs = full_corpus.train[:600]
    tok = train_tokenizer(docs, SMOKE.vocab_size)
    blocks = to_blocks(tokenize_stream(tok, docs), MICRO.ctx)
    return tok, blocks[:-8], blocks[-8:]


# ----------------------------------------------------------------------------- hold-out
def test_corpus_has_no_evaluation_prompt(full_corpus, data_root) -> None:
    corpus = {records.normalize_text(t) for t in full_corpus.train + full_corpus.val}
    # Independent of build_corpus: every evaluation prompt, read straight from the loaders.
    eval_prompts = split_mod.rtplx_split(rtplx.load_rtplx(data_root), "eval", root=data_root)
    t200 = [p for ps in rtplx.load_translated_200(data_root).values() for p in ps]
    assert len(eval_prompts) > 1000 and len(t200) == 200 * 17
    assert {p.lang for p in eval_prompts} == set(RECIPES["standard"].languages)
    leaked = [p.id for p in eval_prompts + t200 if records.normalize_text(p.text) in corpus]
    assert leaked == []
    assert corpus.isdisjoint(split_mod.heldout_texts(data_root))
    # The same Index is held out in every language, including translated-200's English indices.
    train_prompts = split_mod.rtplx_split(rtplx.load_rtplx(data_root), "train", root=data_root)
    assert not {p.index for p in train_prompts} & split_mod.t200_indices(data_root)
    assert not any(split_mod.is_eval_index(p.index) for p in train_prompts)
    # ... and the corpus really contains training prompts (the filter is not dropping everything).
    assert sum(records.normalize_text(p.text) in corpus for p in train_prompts) > 0.9 * len(train_prompts)


def test_corpus_is_deterministic_and_documented(full_corpus) -> None:
    s = full_corpus.stats
    assert s["n_train"] == len(full_corpus.train) and s["n_val"] == len(full_corpus.val)
    assert set(full_corpus.train).isdisjoint(full_corpus.val)
    # Non-English RTP-LX lines are repeated (scarce non-English toxic text).
    assert s["sources"]["rtplx:de"]["repeat"] == RECIPES["standard"].rtplx_repeat_other


def _fake_data(monkeypatch, order: int) -> None:
    """Replace the loaders with small in-memory data, returned in an order that depends on ``order``."""
    def maybe_rev(xs):
        return list(reversed(xs)) if order else list(xs)

    prompts = [records.Prompt(id=f"rtplx:{lang}:{i}", lang=lang, text=f"{lang} prompt {i}", index=i, toxicity=3.0,
                           source="rtplx", group=i) for lang in ("en", "de") for i in range(10)]
    monkeypatch.setattr(rtplx, "load_rtplx", lambda root=None, languages=None: maybe_rev(prompts))
    monkeypatch.setattr(split_mod, "rtplx_split", lambda ps, split, root=None: [p for p in ps if (p.index < 3) == (split == "eval")])
    monkeypatch.setattr(split_mod, "heldout_texts", lambda root=None: {"en prompt 0", "de prompt 1", "leaked sentence"})
    rows = [records.ParaDetoxRow(id=f"pd:{i}", toxic=f"toxic line {i}", neutrals=(f"calm line {i}",)) for i in range(20)]
    rows.append(records.ParaDetoxRow(id="pd:x", toxic="Leaked   SENTENCE", neutrals=()))
    monkeypatch.setattr(sources, "load_paradetox", lambda root=None: maybe_rev(rows))
    monkeypatch.setattr(sources, "load_davidson", lambda root=None: [])
    monkeypatch.setattr(sources, "gettext_parallel", lambda languages=None: {l: [f"{l} msg {i}" for i in range(9)]
                                                                          for l in languages})


def test_corpus_recipe_is_seeded_sorted_and_drops_heldout(monkeypatch, tmp_path) -> None:
    r = dataclasses.replace(SMOKE, languages=("de", "en"), max_docs=0, rtplx_repeat_en=2, rtplx_repeat_other=3,
                            gettext_per_language=4, val_fraction=0.1, davidson_repeat=0)
    _fake_data(monkeypatch, 0)
    a = build_corpus(r, tmp_path)
    _fake_data(monkeypatch, 1)  # same data, other file order: same corpus
    b = build_corpus(r, tmp_path)
    assert (a.train, a.val) == (b.train, b.val)
    c = build_corpus(dataclasses.replace(r, seed=5), tmp_path)
    assert sorted(c.train + c.val) != sorted(a.train + a.val) or c.train != a.train
    docs = a.train + a.val
    assert not any("prompt 0" in d or "prompt 1" in d or "prompt 2" in d for d in docs)  # eval split, every language
    assert "Leaked   SENTENCE" not in docs and a.stats["dropped_heldout"] == 1  # matched by normalised text
    in_train = [d for d in a.train if d == "de prompt 5"]
    assert len(in_train) in (0, 3) and a.train.count("en prompt 5") in (0, 2)  # repeats (unless it went to val)
    assert a.stats["sources"]["gettext:de"]["unique"] == 4


def test_tokenizer_is_deterministic_with_specials(micro_data, full_corpus) -> None:
    tok, _, _ = micro_data
    again = train_tokenizer(full_corpus.train[:600], SMOKE.vocab_size)
    assert tok.backend_tokenizer.to_str() == again.backend_tokenizer.to_str()
    assert len(tok) == SMOKE.vocab_size
    assert tok.bos_token == tok.eos_token == "<|endoftext|>" and tok.pad_token == "<pad>"
    text = "Ich will nach Hause — 我想回家"
    assert tok.decode(tok(text)["input_ids"]) == text  # byte-level: lossless on any script


# ----------------------------------------------------------------------------- schedule & batches
def test_lr_schedule_warmup_then_cosine() -> None:
    r = dataclasses.replace(SMOKE, token_budget=SMOKE.batch_size * SMOKE.ctx * 100, warmup_frac=0.1)
    assert r.steps == 100
    assert lr_at(0, r) == pytest.approx(r.lr_peak / 10)
    assert lr_at(9, r) == pytest.approx(r.lr_peak)
    mid = 10 + 45  # half-way through the cosine
    assert lr_at(mid, r) == pytest.approx(r.lr_min + 0.5 * (r.lr_peak - r.lr_min) * (1 + math.cos(math.pi * 0.5)))
    assert lr_at(100, r) == pytest.approx(r.lr_min)


def test_batches_depend_only_on_step() -> None:
    blocks = torch.arange(40 * 5).reshape(40, 5)
    r = dataclasses.replace(SMOKE, batch_size=4)
    assert torch.equal(batch_at(13, blocks, r), batch_at(13, blocks.clone(), r))
    epoch0 = torch.cat([batch_at(s, blocks, r) for s in range(10)])
    assert sorted(epoch0[:, 0].tolist()) == sorted(blocks[:, 0].tolist())  # one epoch = each block once
    assert not torch.equal(batch_at(0, blocks, r), batch_at(10, blocks, r))  # a new permutation per epoch


# ----------------------------------------------------------------------------- determinism & resume
def _run(micro_data, tmp: Path | None, max_steps: int | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    tok, tr, va = micro_data
    r = dataclasses.replace(MICRO, seed=seed)
    model = make_model(r, tok)
    with _threads(1):  # one thread: fast for a toy model on a busy machine
        train(model, tr, va, r, checkpoint=None if tmp is None else tmp / "ckpt.safetensors", progress=False,
              max_steps=max_steps, device="cpu")
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_same_seed_same_weights_and_resume_equals_uninterrupted(micro_data, tmp_path) -> None:
    a = _run(micro_data, None)
    b = _run(micro_data, None)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # Interrupted after 10 of 24 steps, then resumed from the checkpoint: identical weights.
    assert _run(micro_data, tmp_path, max_steps=10)  # writes the checkpoint and stops
    resumed = _run(micro_data, tmp_path)
    assert all(torch.equal(a[k], resumed[k]) for k in a)
    c = _run(micro_data, None, seed=1)
    assert not torch.equal(a["transformer.wte.weight"], c["transformer.wte.weight"])


def test_precision_auto_follows_native_bf16_and_fp32_trains_in_fp32(micro_data, monkeypatch) -> None:
    import interp.default_model.recipe as R

    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(R, "native_bf16", lambda device, native=native: native)
        assert R.effective_precision(MICRO, "cpu") == expected
        assert R.effective_precision(dataclasses.replace(MICRO, precision="bf16"), "cpu") == "bf16"  # explicit wins
    assert R.recipe_hash(dataclasses.replace(MICRO, precision="bf16")) != R.recipe_hash(dataclasses.replace(MICRO, precision="fp32"))
    tok, tr, va = micro_data
    out = {}
    for precision in ("fp32", "bf16"):
        r = dataclasses.replace(MICRO, precision=precision, token_budget=MICRO.batch_size * MICRO.ctx * 2)
        model = make_model(r, tok)
        with _threads(1):
            res = train(model, tr, va, r, progress=False, device="cpu")
        assert res.precision == precision
        out[precision] = model.state_dict()["transformer.h.0.mlp.c_fc.weight"].clone()
    assert not torch.equal(out["fp32"], out["bf16"])  # autocast on or off really changes the arithmetic
    # Independent: one fp32 step by hand (no autocast) reproduces the loss train() logs at step 1.
    r = dataclasses.replace(MICRO, precision="fp32", token_budget=MICRO.batch_size * MICRO.ctx, eval_every=1)
    model = make_model(r, tok)
    ref = make_model(r, tok)
    batch = batch_at(0, tr, r)
    with torch.no_grad():
        want = float(torch.nn.functional.cross_entropy(ref(input_ids=batch[:, :-1]).logits.reshape(-1, r.vocab_size),
                                                       batch[:, 1:].reshape(-1)))
    with _threads(1):
        res = train(model, tr, va, r, progress=False, device="cpu")
    assert res.curve[0]["train_loss"] == pytest.approx(want, rel=1e-5)


def test_native_bf16_probes_exist_in_this_torch() -> None:
    """auto reads torch's private CPU probes: if an upgrade removes them, a bf16 machine would silently train in fp32."""
    import torch

    assert callable(torch.cpu._is_avx512_bf16_supported) and callable(torch.cpu._is_amx_tile_supported)


def test_a_cached_build_of_other_inputs_is_refused(smoke_dir, monkeypatch, tmp_path) -> None:
    import shutil

    from interp.core.artifacts import InputError
    from interp.default_model.build import resolve_preset

    monkeypatch.setenv("XDETOX_CACHE", str(smoke_dir.parents[1]))
    assert default_model_dir("smoke", heldout_loss=lm_loss) == smoke_dir
    copy = tmp_path / "xdetox_cache" / "default-model" / smoke_dir.name
    shutil.copytree(smoke_dir, copy)
    m = json.loads((copy / "manifest.json").read_text())
    m["precision"] = "fp32" if m["precision"] == "bf16" else "bf16"  # as if trained in the other precision
    (copy / "manifest.json").write_text(json.dumps(m))
    monkeypatch.setenv("XDETOX_CACHE", str(tmp_path / "xdetox_cache"))
    assert resolve_preset("smoke")[2] == copy
    with pytest.raises(InputError, match="built from"):
        default_model_dir("smoke", heldout_loss=lm_loss)


def test_checkpoint_of_another_model_is_a_clear_error(micro_data, tmp_path) -> None:
    _run(micro_data, tmp_path, max_steps=2)
    tok, tr, va = micro_data
    other = dataclasses.replace(MICRO, d_model=32)
    with pytest.raises(ValueError, match="ckpt.safetensors.*delete it"):
        train(make_model(other, tok), tr, va, other, checkpoint=tmp_path / "ckpt.safetensors", progress=False)


# ----------------------------------------------------------------------------- held-out loss
def test_lm_loss_matches_hf_loss(micro_data) -> None:
    tok, _, _ = micro_data
    model = make_model(MICRO, tok).eval()
    texts = ["the quick brown fox", "Ich will nach Hause gehen, jetzt sofort"]
    got = lm_loss_by_language(model, tok, {"xx": texts}, loss=lm_loss)["xx"]
    # Independent: HF's own shifted loss per text, weighted by its number of predicted tokens.
    total, n = 0.0, 0
    for t in texts:
        ids = torch.tensor([[tok.eos_token_id] + tok(t)["input_ids"]])
        with torch.no_grad():
            loss = model(input_ids=ids, labels=ids).loss
        total += float(loss) * (ids.shape[1] - 1)
        n += ids.shape[1] - 1
    assert got == pytest.approx(total / n, rel=1e-5)


# ----------------------------------------------------------------------------- the smoke build
def test_smoke_build_writes_a_loadable_model_with_manifest_and_curve(smoke_dir) -> None:
    from interp.model.architecture import get_adapter
    from interp.model.loading import load_model

    assert is_built(smoke_dir)
    m = json.loads((smoke_dir / "manifest.json").read_text())
    assert m["kind"] == "default-model" and m["recipe_hash"] == recipe_hash(SMOKE)
    from interp.default_model.recipe import effective_precision

    assert m["precision"] == effective_precision(SMOKE)  # the folder's hash, the training and the manifest agree
    assert m["stopped_by"] == "token_budget" and m["steps"] == SMOKE.steps
    assert m["tokens_trained"] == SMOKE.steps * SMOKE.batch_size * SMOKE.ctx
    assert set(m["heldout_loss_by_language"]) == set(SMOKE.languages)
    assert all(0 < v < 8 for v in m["heldout_loss_by_language"].values())
    curve = json.loads((smoke_dir / "training_curve.json").read_text())
    assert curve[-1]["step"] == SMOKE.steps and all(c["val_loss"] is not None for c in curve)
    assert curve[-1]["train_loss"] < math.log(SMOKE.vocab_size)  # it learned something
    assert not (smoke_dir / "_train").exists()
    bridge = load_model(str(smoke_dir), device="cpu")
    a = get_adapter(bridge)
    assert (a.family, a.n_layers, a.d_model, a.d_mlp) == ("gpt2", SMOKE.n_layer, SMOKE.d_model, SMOKE.d_mlp)
    assert bridge.tokenizer.pad_token == "<pad>"


def test_default_model_dir_uses_cache_and_preset_env(smoke_dir, monkeypatch) -> None:
    from interp.model.loading import load_hf_model

    monkeypatch.setenv("XDETOX_CACHE", str(smoke_dir.parents[1]))
    monkeypatch.setenv("XDETOX_DEFAULT_PRESET", "smoke")
    assert default_model_dir(build=False) == smoke_dir
    assert default_model_dir("smoke", build=False) == smoke_dir
    with pytest.raises(TypeError, match="heldout_loss"):  # a build needs the LM loss, even with a warm cache
        default_model_dir("smoke")
    from interp.model.loading import default_model_path

    assert default_model_path("smoke") == smoke_dir
    hf, tok = load_hf_model("default", device="cpu")
    assert hf.config.n_layer == SMOKE.n_layer
    monkeypatch.delenv("XDETOX_DEFAULT_PRESET")
    with pytest.raises(FileNotFoundError, match="xdetox model build-default --preset standard"):
        default_model_dir(build=False)


def test_cli_build_default_finds_the_cached_build(smoke_dir, monkeypatch, capsys) -> None:
    from interp.app.cli import main

    monkeypatch.setenv("XDETOX_CACHE", str(smoke_dir.parents[1]))
    assert main(["model", "build-default", "--preset", "smoke", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert str(smoke_dir) in out and "stopped by token_budget" in out


def test_recipe_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="unknown default-model recipe 'nope'.*smoke"):
        get_recipe("nope")
    with pytest.raises(ValueError, match="d_model 100 is not divisible by n_head 3"):
        dataclasses.replace(SMOKE, d_model=100, n_head=3)
    assert recipe_hash(SMOKE) != recipe_hash(dataclasses.replace(SMOKE, seed=1))
