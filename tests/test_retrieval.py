"""interp.crosslingual.retrieval: planted retrieval cases, pooling vs an unbatched forward, caching, tiny-model runs."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from interp import mean_paired_cosine, retrieval_accuracy
from interp.crosslingual.retrieval import (PER_LANGUAGE_COLUMNS, PER_LAYER_COLUMNS, RetrievalResult, bilingual_retrieval,
                              layer_representations, parallel_texts, resolve_layers, retrieval_accuracies)


def test_identical_embeddings_retrieve_perfectly() -> None:
    a = torch.randn(50, 16, generator=torch.Generator().manual_seed(0))
    assert retrieval_accuracy(a, a) == 1.0
    assert retrieval_accuracy(a, 3.0 * a) == 1.0  # cosine: scale-free
    assert mean_paired_cosine(a, a) == pytest.approx(1.0, abs=1e-6)


def test_shuffled_embeddings_are_near_chance() -> None:
    g = torch.Generator().manual_seed(1)
    n = 40
    a = torch.randn(n, 64, generator=g)
    accs = [retrieval_accuracy(a, a[torch.randperm(n, generator=g)]) for _ in range(200)]
    # b = a[perm]: row i is found iff perm fixes i, so the mean over permutations is 1/n.
    assert np.mean(accs) == pytest.approx(1 / n, abs=0.5 / n)
    unrelated = [retrieval_accuracy(torch.randn(n, 64, generator=g), torch.randn(n, 64, generator=g)) for _ in range(100)]
    assert np.mean(unrelated) == pytest.approx(1 / n, abs=0.5 / n)


def test_accuracy_against_brute_force_and_directions_differ() -> None:
    g = torch.Generator().manual_seed(2)
    a = torch.randn(30, 8, generator=g)
    b = a + 0.9 * torch.randn(30, 8, generator=g)
    cos = lambda u, v: float(u @ v / (u.norm() * v.norm()))  # noqa: E731
    brute_ab = np.mean([max(range(30), key=lambda j: cos(a[i], b[j])) == i for i in range(30)])
    brute_ba = np.mean([max(range(30), key=lambda j: cos(b[i], a[j])) == i for i in range(30)])
    fwd, bwd = retrieval_accuracies(a[None], b[None])
    assert float(fwd[0]) == pytest.approx(brute_ab) and float(bwd[0]) == pytest.approx(brute_ba)
    assert 0 < brute_ab < 1
    assert mean_paired_cosine(a, b) == pytest.approx(np.mean([cos(a[i], b[i]) for i in range(30)]), abs=1e-6)


def test_metric_bad_inputs() -> None:
    with pytest.raises(ValueError, match="same shape"):
        retrieval_accuracy(torch.zeros(5, 4), torch.zeros(6, 4))
    with pytest.raises(ValueError, match="at least 2"):
        retrieval_accuracy(torch.ones(1, 4), torch.ones(1, 4))
    with pytest.raises(ValueError, match=r"\[n, d\]"):
        retrieval_accuracy(torch.zeros(4), torch.zeros(4))


def test_resolve_layers() -> None:
    assert resolve_layers(None, 4) == [0, 1, 2, 3] and resolve_layers("all", 4) == [0, 1, 2, 3]
    assert resolve_layers((1, 2), 4) == [1, 2] and resolve_layers([3], 4) == [3]
    with pytest.raises(ValueError, match=r"valid indices are 0 \(embeddings\) \.\. 3"):
        resolve_layers((2, 9), 4)


@pytest.fixture()
def tiny_gpt2(tiny_dirs, tmp_path, monkeypatch):
    from interp.model.loading import load_model

    monkeypatch.setenv("XDETOX_CACHE", str(tmp_path / "cache"))
    return load_model(str(tiny_dirs["gpt2"]), device="cpu", dtype="float32")


TEXTS = ["I want to go home now", "Je veux", "what the hell is wrong with you today", "我想回家"]


def test_layer_representations_match_unbatched_forward(tiny_dirs, family) -> None:
    from interp.model.architecture import get_adapter
    from interp.model.loading import load_model

    model = load_model(str(tiny_dirs[family]), device="cpu", dtype="float32")
    reps = layer_representations(model, TEXTS, batch_size=3, progress=False, cache=False)
    from transformers import AutoTokenizer

    from tiny_models import NATIVE_BOS_FAMILIES

    hf = model.original_model
    # The oracle's ids come from the model's *own* tokenizer as saved (not the bridge's, which
    # TransformerLens re-opens with BOS on), and its pool leaves the BOS state out.
    tok = AutoTokenizer.from_pretrained(str(tiny_dirs[family]))
    ad = get_adapter(model)
    assert reps.shape == (ad.n_layers + 1, len(TEXTS), ad.d_model)
    for i, t in enumerate(TEXTS):  # one text at a time: no padding at all
        ids = tok(t)["input_ids"]
        has_bos = family in NATIVE_BOS_FAMILIES
        assert (ids[0] == tok.bos_token_id) == has_bos
        with torch.no_grad():
            hs = hf(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        ref = torch.stack([h[0, 1:].mean(0) if has_bos else h[0].mean(0) for h in hs])
        torch.testing.assert_close(reps[:, i], ref, atol=1e-5, rtol=1e-5)
        if has_bos:  # the BOS state would change the pool: the check above can fail
            with_bos = torch.stack([h[0].mean(0) for h in hs])
            assert (with_bos - ref).abs().max() > 1e-3


def test_layer_representations_cached(tiny_gpt2, monkeypatch) -> None:
    import interp.crosslingual.retrieval as R

    first = layer_representations(tiny_gpt2, TEXTS, progress=False)
    monkeypatch.setattr(R, "_compute_representations", lambda *a, **k: (_ for _ in ()).throw(AssertionError("recomputed")))
    torch.testing.assert_close(layer_representations(tiny_gpt2, TEXTS, progress=False), first)
    with pytest.raises(AssertionError, match="recomputed"):  # different texts: a different key
        layer_representations(tiny_gpt2, TEXTS[:2], progress=False)


def test_bilingual_retrieval_tiny_model_real_data(tiny_gpt2, data_root, tmp_path) -> None:
    par = parallel_texts("translated200", ["en", "de", "ja"], root=data_root, limit=12)
    assert {k: len(v) for k, v in par.items()} == {"en": 12, "de": 12, "ja": 12}
    res = bilingual_retrieval(tiny_gpt2, par, progress=False)
    n_l = tiny_gpt2.original_model.config.n_layer + 1
    assert list(res.per_layer.columns) == list(PER_LAYER_COLUMNS) and len(res.per_layer) == 2 * n_l
    assert list(res.per_language.columns) == list(PER_LANGUAGE_COLUMNS)
    assert list(res.per_language["lang"]) == ["de", "ja"] and res.n_pairs == 12 and res.layers == list(range(n_l))
    pl = res.per_layer
    assert pl[["acc_en_to_x", "acc_x_to_en"]].stack().between(0, 1).all()
    assert np.allclose(pl["acc_mean"], (pl["acc_en_to_x"] + pl["acc_x_to_en"]) / 2)
    de = res.per_language.set_index("lang").loc["de"]
    assert de["retrieval_acc"] == pytest.approx(pl[pl.lang == "de"]["acc_mean"].mean())
    ranged = bilingual_retrieval(tiny_gpt2, par, layers=(1, 2), progress=False)
    assert ranged.layers == [1, 2]
    assert ranged.per_language.set_index("lang").loc["de", "mean_paired_cosine"] == pytest.approx(
        pl[(pl.lang == "de") & pl.layer.isin([1, 2])]["mean_paired_cosine"].mean())
    back = RetrievalResult.load(res.save(tmp_path / "r"))
    pd.testing.assert_frame_equal(back.per_language, res.per_language)
    assert back.layers == res.layers


def test_long_texts_truncated_to_model_positions(tiny_gpt2) -> None:
    long = ["the quick brown fox jumps over the lazy dog " * 40, "I want to go home now"]
    reps = layer_representations(tiny_gpt2, long, progress=False, cache=False)  # 128 positions, far more tokens
    assert torch.isfinite(reps).all()


def test_bilingual_retrieval_bad_inputs(tiny_gpt2) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        bilingual_retrieval(tiny_gpt2, {"en": ["a b", "c d"], "de": ["x y"]}, progress=False)
    with pytest.raises(ValueError, match="pivot language 'en' not in"):
        bilingual_retrieval(tiny_gpt2, {"de": ["a b", "c d"], "fr": ["x y", "z w"]}, progress=False)
    with pytest.raises(ValueError, match=r"texts \[1\] are empty"):
        layer_representations(tiny_gpt2, ["ok", "  "], progress=False)
