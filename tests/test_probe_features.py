"""Feature extraction: pooled post-norm hidden states, padding-invariant, cached."""
from __future__ import annotations

import pytest
import torch
from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent

from interp.model.loading import wrap_bridge
from probes import extract_features, pool_hidden
from tiny_models import NATIVE_BOS_FAMILIES, family_tokenizer, make_model

TEXTS = ["you are a stupid idiot", "hi", "the quick brown fox jumps over the lazy dog", "Je veux aller",
         "what the hell is wrong with you", "我想回家"]
BOS_FAMILIES = NATIVE_BOS_FAMILIES  # families whose own tokenizers prepend BOS (written here, not read from code)


@pytest.fixture
def tok(request):
    """The tiny tokenizer; in family tests, with the family's native BOS (``auto`` follows it)."""
    family = request.getfixturevalue("family") if "family" in request.fixturenames else "gpt2"
    return family_tokenizer(family)


def _reference(hf, tok, family: str, text: str, layer: int | None, pooling: str) -> torch.Tensor:
    """Independent computation: one unpadded sentence through the plain HF model."""
    ids = tok(text, add_special_tokens=False)["input_ids"]
    if family in BOS_FAMILIES:
        ids = [tok.bos_token_id] + ids
    ids_t = torch.tensor([ids])
    with torch.no_grad():
        if layer is None:
            h = hf.base_model(ids_t).last_hidden_state[0]  # HF's backbone output: after the final norm
        else:
            h = hf(ids_t, output_hidden_states=True).hidden_states[layer + 1][0]
    return {"mean": h.mean(0), "last": h[-1], "max": h.amax(0)}[pooling]


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batches_match_unpadded_sentences(family: str, side: str, tok) -> None:
    hf = make_model(family, len(tok))
    for layer in (None, 0):
        for pooling in ("mean", "last", "max"):
            ref = torch.stack([_reference(hf, tok, family, t, layer, pooling) for t in TEXTS])
            # batch_size 3 mixes lengths within each batch, so padding is exercised on ``side``
            got = extract_features(hf, TEXTS, tokenizer=tok, layer=layer, pooling=pooling, batch_size=3,
                                   padding_side=side, use_cache=False, progress=False)
            assert got.shape == (len(TEXTS), 32) and got.dtype == torch.float32
            torch.testing.assert_close(got, ref, atol=2e-5, rtol=1e-4, msg=f"{layer=} {pooling=}")


def test_default_feature_is_after_the_final_norm(family: str, tok) -> None:
    from interp.model.architecture import unwrap, get_adapter

    hf = make_model(family, len(tok))
    adapter = get_adapter(hf)
    final = extract_features(hf, TEXTS[:3], tokenizer=tok, use_cache=False, progress=False)
    last_block = extract_features(hf, TEXTS[:3], tokenizer=tok, layer=-1, use_cache=False, progress=False)
    for i, text in enumerate(TEXTS[:3]):
        ids = tok(text, add_special_tokens=False)["input_ids"]
        if family in BOS_FAMILIES:
            ids = [tok.bos_token_id] + ids
        seen: dict[str, torch.Tensor] = {}
        h = unwrap(adapter.block(adapter.n_layers - 1)).register_forward_hook(
            lambda m, a, o: seen.update(pre=o[0] if isinstance(o, tuple) else o))
        with torch.no_grad():
            hf(torch.tensor([ids]))
            post = adapter.final_norm()(seen["pre"])[0]  # apply the final norm by hand, then pool
        h.remove()
        torch.testing.assert_close(final[i], post.mean(0), atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(last_block[i], seen["pre"][0].mean(0), atol=2e-5, rtol=1e-4)
    assert (final - last_block).abs().max() > 1e-2, "final feature must differ from the pre-norm residual"


def test_bridge_and_hf_model_give_the_same_features(family: str, tok) -> None:
    hf = make_model(family, len(tok))
    direct = extract_features(hf, TEXTS, tokenizer=tok, use_cache=False, progress=False)
    bridge = wrap_bridge(make_model(family, len(tok)), tok)
    wrapped = {n for n, m in bridge.original_model.named_modules() if isinstance(m, GeneralizedComponent)}
    for layer in (None, 0):
        via_bridge = extract_features(bridge, TEXTS, layer=layer, use_cache=False, progress=False)
        ref = direct if layer is None else extract_features(hf, TEXTS, tokenizer=tok, layer=0, use_cache=False,
                                                            progress=False)
        torch.testing.assert_close(via_bridge, ref, atol=1e-5, rtol=1e-4)
    # the bridge's wrappers are back in place afterwards, and its hooks still fire
    assert wrapped == {n for n, m in bridge.original_model.named_modules() if isinstance(m, GeneralizedComponent)}
    seen = []
    with bridge.hooks(fwd_hooks=[("blocks.0.mlp.hook_post", lambda act, hook: seen.append(1) or act * 0)]):
        ablated = extract_features(bridge, TEXTS, use_cache=False, progress=False)
    assert seen and (ablated - direct).abs().max() > 1e-3  # a caller's hooks are honoured


def test_pool_hidden_masks_by_hand() -> None:
    h = torch.arange(2 * 4 * 2, dtype=torch.float32).reshape(2, 4, 2)
    h[0, 0] = 100.0  # a pad position (left padding) holding a large value
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 0, 0]])
    torch.testing.assert_close(pool_hidden(h, mask, "mean"), torch.stack([h[0, 1:].mean(0), h[1, :2].mean(0)]))
    torch.testing.assert_close(pool_hidden(h, mask, "last"), torch.stack([h[0, 3], h[1, 1]]))
    torch.testing.assert_close(pool_hidden(h, mask, "max"), torch.stack([h[0, 1:].amax(0), h[1, :2].amax(0)]))
    with pytest.raises(ValueError, match="pooling must be one of"):
        pool_hidden(h, mask, "median")  # type: ignore[arg-type]


def test_cache_hit_skips_the_model(tmp_path, tok) -> None:
    hf = make_model("gpt2", len(tok))
    first = extract_features(hf, TEXTS, tokenizer=tok, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1

    def refuse(*_a, **_k):
        raise AssertionError("model ran on a cache hit")

    handle = hf.register_forward_pre_hook(refuse)
    try:
        again = extract_features(hf, TEXTS, tokenizer=tok, cache_dir=tmp_path, progress=False)
        assert torch.equal(first, again)
        with pytest.raises(AssertionError, match="model ran"):  # other pooling: a different key
            extract_features(hf, TEXTS, tokenizer=tok, cache_dir=tmp_path, pooling="max", progress=False)
        with pytest.raises(AssertionError, match="model ran"):  # other texts: a different key
            extract_features(hf, TEXTS[:-1], tokenizer=tok, cache_dir=tmp_path, progress=False)
    finally:
        handle.remove()
    with torch.no_grad():  # other weights: a different fingerprint, so a miss
        next(hf.parameters()).add_(1.0)
    changed = extract_features(hf, TEXTS, tokenizer=tok, cache_dir=tmp_path, progress=False)
    assert not torch.equal(changed, first)


def test_bad_inputs_have_clear_errors(tok) -> None:
    hf = make_model("gpt2", len(tok))
    kw = dict(tokenizer=tok, use_cache=False, progress=False)
    with pytest.raises(ValueError, match="texts is empty"):
        extract_features(hf, [], **kw)
    with pytest.raises(ValueError, match="text #1 tokenizes to no tokens"):
        extract_features(hf, ["ok", ""], **kw)
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        extract_features(hf, ["ok", 3], **kw)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="layer=5 out of range: the model has 2 blocks"):
        extract_features(hf, ["ok"], layer=5, **kw)
    with pytest.raises(ValueError, match="pooling must be one of"):
        extract_features(hf, ["ok"], pooling="sum", **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no tokenizer"):
        extract_features(hf, ["ok"], use_cache=False, progress=False)


def test_model_views_of_one_adapter_model_are_cached_apart(tmp_path, tok) -> None:
    from peft import LoraConfig, get_peft_model

    from interp.model.loading import base_and_tuned, load_model

    hf = make_model("llama", len(tok))
    plain = extract_features(make_model("llama", len(tok)), TEXTS, tokenizer=tok, use_cache=False, progress=False)
    pm = get_peft_model(hf, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], lora_alpha=4))
    for n, p in pm.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.5)
    bridge = load_model(pm, tokenizer=tok)
    base, tuned = base_and_tuned(bridge)
    f_base = extract_features(base, TEXTS, cache_dir=tmp_path, progress=False)
    f_tuned = extract_features(tuned, TEXTS, cache_dir=tmp_path, progress=False)
    torch.testing.assert_close(f_base, plain, atol=1e-5, rtol=1e-4)  # adapter really disabled
    assert (f_tuned - f_base).abs().max() > 1e-3
    assert len(list(tmp_path.glob("*.safetensors"))) == 2
    torch.testing.assert_close(extract_features(base, TEXTS, cache_dir=tmp_path, progress=False), f_base)
