"""find_toxic_neurons: a planted value vector aligned with a planted probe must rank first."""
from __future__ import annotations

import types

import pytest
import torch

from interp.model.architecture import unwrap, get_adapter
from interp.model.loading import wrap_bridge
from interp.neurons.ranking import ProbeDimensionError, ToxicNeurons, find_toxic_neurons, rank_value_vectors
from test_activations import oracle
from tiny_models import make_model, make_tokenizer




def plant(model, layer: int, neuron: int, vec: torch.Tensor) -> None:
    """Overwrite value vector (layer, neuron) through the adapter's storage orientation."""
    a = get_adapter(model)
    w = unwrap(a.out_proj(layer)).weight
    with torch.no_grad():
        if a.spec.out_is_conv1d:
            w[neuron] = vec
        else:
            w[:, neuron] = vec


def test_planted_neuron_ranks_first(family: str) -> None:
    hf = make_model(family, 320)
    a = get_adapter(hf)
    g = torch.Generator().manual_seed(3)
    probe = torch.randn(a.d_model, generator=g)
    plant(hf, 1, 7, 0.05 * probe + 0.001 * torch.randn(a.d_model, generator=g))  # small norm: cosine, not dot
    plant(hf, 0, 2, -3.0 * probe)  # anti-aligned: must rank last, not first
    bridge = wrap_bridge(hf, make_tokenizer())
    table = find_toxic_neurons(bridge, probe, top_k=5, progress=False)
    assert (table[0].layer, table[0].neuron) == (1, 7)
    assert table[0].cosine == pytest.approx(1.0, abs=1e-3)
    assert [r.rank for r in table] == [1, 2, 3, 4, 5]
    assert all(r.kept and r.mean_activation is None for r in table)
    # independent check of the whole ranking: per-layer loops with torch.nn.functional.cosine_similarity
    V = a.value_vectors()
    ref = torch.cat([torch.nn.functional.cosine_similarity(V[l], probe[None], dim=-1) for l in range(a.n_layers)])
    top = torch.topk(ref, 5)
    assert table.layers_neurons() == [(int(i) // a.d_mlp, int(i) % a.d_mlp) for i in top.indices]
    torch.testing.assert_close(torch.tensor([r.cosine for r in table]), top.values, atol=1e-5, rtol=0)


def test_duck_typed_probe_and_2d_weight() -> None:
    hf = make_model("gpt2", 320)
    bridge = wrap_bridge(hf, make_tokenizer())
    w = torch.randn(32)
    a = find_toxic_neurons(bridge, types.SimpleNamespace(direction=w), top_k=3, progress=False)
    b = find_toxic_neurons(bridge, w[None] * 7.0, top_k=3, progress=False)
    assert a.layers_neurons() == b.layers_neurons()


def test_activation_filter_matches_oracle(tmp_path) -> None:
    bridge = wrap_bridge(make_model("llama", 320), make_tokenizer())
    prompts = ["I want to", "you are a stupid", "hello there"]
    table = find_toxic_neurons(bridge, torch.randn(32), top_k=6, filter_prompts=prompts, n_new_tokens=4,
                               progress=False)
    ref, _ = oracle(bridge, prompts, table.layers_neurons(), 4)
    means = ref.mean(dim=(0, 1))
    for r, mu in zip(table, means):
        assert r.mean_activation == pytest.approx(float(mu), abs=1e-5)
        assert r.kept == (float(mu) > 0)
    frame = table.to_frame()
    assert list(frame.columns) == ["rank", "layer", "neuron", "cosine", "mean_activation", "kept"]
    path = table.to_json(tmp_path / "neurons.json")
    back = ToxicNeurons.from_json(path)
    assert back.rows == table.rows and back.meta["top_k"] == 6
    assert back.meta["filter"]["n_prompts"] == 3
    import json
    assert json.loads(path.read_text())["manifest"]["kind"] == "toxic-neurons"


def test_activation_filter_keeps_positive_and_drops_non_positive_means() -> None:
    """Two planted candidates whose activations are fixed by their bias (key column zeroed):
    gelu(+10) > 0 must pass the filter, gelu(-10) <= 0 must not, whatever the prompts."""
    hf = make_model("gpt2", 320)
    a = get_adapter(hf)
    g = torch.Generator().manual_seed(5)
    probe = torch.randn(a.d_model, generator=g)
    plant(hf, 1, 3, probe.clone())
    plant(hf, 1, 5, 0.9 * probe + 0.05 * torch.randn(a.d_model, generator=g))
    fc = unwrap(a.in_proj(1))
    with torch.no_grad():
        for unit, bias in ((3, 10.0), (5, -10.0)):
            fc.weight[:, unit] = 0.0  # Conv1D [d_model, d_mlp]: the key is a column
            fc.bias[unit] = bias
    bridge = wrap_bridge(hf, make_tokenizer())
    table = find_toxic_neurons(bridge, probe, top_k=2, filter_prompts=["I want to", "you are a stupid"],
                               n_new_tokens=3, progress=False)
    assert {(r.layer, r.neuron) for r in table} == {(1, 3), (1, 5)}
    by = {(r.layer, r.neuron): r for r in table}
    assert by[(1, 3)].mean_activation == pytest.approx(10.0, abs=1e-4) and by[(1, 3)].kept
    assert by[(1, 5)].mean_activation <= 0 and not by[(1, 5)].kept
    assert table.kept().layers_neurons() == [(1, 3)]


def test_bad_inputs() -> None:
    bridge = wrap_bridge(make_model("gpt2", 320), make_tokenizer())
    with pytest.raises(ProbeDimensionError, match="16 entries.*d_model=32"):
        find_toxic_neurons(bridge, torch.randn(16), progress=False)
    with pytest.raises(ValueError, match="zero"):
        find_toxic_neurons(bridge, torch.zeros(32), progress=False)
    with pytest.raises(ValueError, match="empty prompt list"):
        find_toxic_neurons(bridge, torch.randn(32), filter_prompts=[], progress=False)
    with pytest.raises(ValueError, match="keep"):
        find_toxic_neurons(bridge, torch.randn(32), keep="bogus", progress=False)  # type: ignore[arg-type]


def test_from_json_rejects_foreign_file(tmp_path) -> None:
    p = tmp_path / "x.json"
    p.write_text('{"rows": []}')
    with pytest.raises(ValueError, match="format"):
        ToxicNeurons.from_json(p)


def test_rank_value_vectors_global_topk() -> None:
    V = torch.randn(3, 10, 4)
    d = torch.randn(4)
    cos, layers, units = rank_value_vectors(V, d, 30)
    assert len(cos) == 30 and torch.all(cos[:-1] >= cos[1:])
    assert set(zip(layers.tolist(), units.tolist())) == {(l, u) for l in range(3) for u in range(10)}
