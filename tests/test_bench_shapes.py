"""benchmarks/shapes.py builds the paper's shapes, and the GPU check's distribution test can tell samplers apart."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from shapes import SHAPES, bare_view, build, shape_tokenizer, weights_bytes  # noqa: E402

# Published parameter counts (billions) of the checkpoints the shapes copy.
PUBLISHED_B = {"bloom-1b7": 1.72, "bloom-7b1": 7.07, "llama2-7b": 6.74, "llama3-8b": 8.03, "aya23-8b": 8.03}


@pytest.mark.parametrize("name", list(PUBLISHED_B))
def test_shape_parameter_counts_match_the_checkpoints(name: str) -> None:
    import transformers as T

    with torch.device("meta"):
        m = T.AutoModelForCausalLM.from_config(SHAPES[name].config())
    n = sum(p.numel() for p in m.parameters()) / 1e9
    assert n == pytest.approx(PUBLISHED_B[name], abs=0.01)


def test_shape_details_that_change_the_code_path() -> None:
    c = {k: s.config() for k, s in SHAPES.items()}
    assert c["llama3-8b"].num_key_value_heads == 8 and c["llama2-7b"].num_key_value_heads == 32
    assert c["aya23-8b"].logit_scale == pytest.approx(0.0625) and c["aya23-8b"].model_type == "cohere"
    assert c["mgpt"].model_type == "gpt2" and c["mgpt"].n_inner == 8192
    assert {s.dpo_preset for k, s in SHAPES.items() if k.endswith(("7b", "7b1", "8b"))} == {"paper-qlora"}


def test_shape_tokenizer_covers_the_vocabulary() -> None:
    tok = shape_tokenizer(5000)
    assert len(tok) == 5000
    assert isinstance(tok.decode([4999, 10, 3000]), str)
    assert max(tok("I want to go home")["input_ids"]) < 320  # real text uses the trained pieces


def test_bare_view_shares_weights_and_stays_unwrapped() -> None:
    from interp.model.loading import wrap_bridge

    hf, tok = build("tiny")
    bare = bare_view(hf)
    before = weights_bytes(hf)
    bridge = wrap_bridge(hf, tok)
    assert bare.transformer.h[0].mlp.c_fc.weight is hf.transformer.h[0].mlp.c_fc.weight
    from transformer_lens.model_bridge.generalized_components.base import GeneralizedComponent

    assert not any(isinstance(m, GeneralizedComponent) for m in bare.transformer.h[0].modules())  # no bridge component inside
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(bare(ids).logits, bridge(ids, return_type="logits"), atol=1e-5, rtol=1e-5)
    assert weights_bytes(bare) == before


def test_pit_ks_accepts_the_right_sampler_and_rejects_a_wrong_one() -> None:
    from gpu_checks import _pit_ks

    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(50, generator=g) * 2, -1)
    right = torch.multinomial(probs, 3000, replacement=True, generator=g).tolist()
    wrong_p = torch.softmax(torch.log(probs) / 0.7, -1)  # a sharper temperature: not the same distribution
    wrong = torch.multinomial(wrong_p, 3000, replacement=True, generator=g).tolist()
    assert _pit_ks(right, probs, 0)["p_value"] > 0.01
    assert _pit_ks(wrong, probs, 0)["p_value"] < 1e-4


def test_qlora_recipe_check_passes_our_loader_and_fails_the_reference_fp4(tmp_path) -> None:
    """The GPU check's recipe test: ours is NF4 + double quant + bf16 compute; a bare load_in_4bit is not."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from gpu_checks import qlora_recipe
    from interp.model.loading import load_hf_model
    from tiny_models import save_tiny

    d = save_tiny("llama", tmp_path / "llama")
    ours, _ = load_hf_model(d, device="cpu", quantization="4bit")
    r = qlora_recipe(ours)
    assert r["n_4bit_layers"] > 0 and r["all_nf4"] and r["all_double_quant"] and r["all_bf16_compute"]
    ref = AutoModelForCausalLM.from_pretrained(d, quantization_config=BitsAndBytesConfig(load_in_4bit=True),
                                               device_map={"": "cpu"})
    r = qlora_recipe(ref)
    assert r["n_4bit_layers"] > 0 and not r["all_nf4"] and not r["all_double_quant"]


def test_step_timer_times_each_step_on_its_own_instance() -> None:
    import time

    from shapes import step_timer

    a, b = step_timer("cpu"), step_timer("cpu")
    for _ in range(2):
        a.on_step_begin(None, None, None)
        time.sleep(0.01)
        a.on_step_end(None, None, None)
    assert len(a.steps) == 2 and all(s >= 0.01 for s in a.steps) and b.steps == []


def test_every_model_benchmark_offers_every_shape() -> None:
    """Each benchmark that loads a causal LM takes --shape with all seven paper shapes (issue 20)."""
    import re

    root = Path(__file__).resolve().parents[1] / "benchmarks"
    assert set(SHAPES) == {"tiny", "mgpt", "bloom-1b7", "bloom-7b1", "llama2-7b", "llama3-8b", "aya23-8b"}
    for script in ("bench_scale.py", "bench_neurons.py", "bench_probes.py", "bench_eval.py", "bench_default_model.py"):
        text = (root / script).read_text()
        assert "add_shape_arg(" in text or re.search(r'"--shape".*choices=list\(SHAPES\)', text), script


def test_bench_scale_runs_its_stages_and_checks_its_bars(tmp_path: Path) -> None:
    """bench_scale end to end at the tiny shape: every requested stage in its own process, results and bars
    written, the code version recorded."""
    import json
    import subprocess

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "tiny.json"
    subprocess.run([sys.executable, "benchmarks/bench_scale.py", "--shape", "tiny", "--stages", "rank",
                    "--rounds", "1", "--out", str(out)], cwd=root, check=True, capture_output=True, text=True)
    res = json.loads(out.read_text())
    assert set(res["stages"]) == {"rank"} and "error" not in res["stages"]["rank"]
    assert res["stages"]["rank"]["n_value_vectors"] == 4 * 1024  # tiny: 4 layers x d_mlp 1024
    assert {"rss_rank", "ranking"} <= set(res["bars"]) and res["argv"][:2] == ["--shape", "tiny"]
    if (root / ".git").exists():
        assert len(res["code"]["commit"]) == 40
