"""The default-model quality criteria, each checked against an independent computation on a tiny model."""
from __future__ import annotations

import pytest
import torch
from tiny_models import make_model, make_tokenizer

from interp.neurons.interventions import generate_with_intervention
from interp.model.loading import wrap_bridge
from interp.app.quality import Criterion, check_build, check_heldout, check_probe, format_report, toxic_value_vectors


class _SetLexicon:
    """A lexicon that flags exactly the given decoded tokens."""

    languages = ("en",)

    def __init__(self, toxic: set[str]) -> None:
        self.toxic = toxic

    def is_toxic_token(self, token: str, lang: str | None = None) -> bool:
        return token in self.toxic


def test_build_criterion_bar_and_stop_reason() -> None:
    m = {"build_seconds": 800.0, "tokens_per_s": 3500.0, "stopped_by": "token_budget", "tokens_trained": 2_000_000}
    assert check_build(m).passed
    assert not check_build({**m, "build_seconds": 901.0}).passed
    assert not check_build({**m, "stopped_by": "time_budget"}).passed  # a capped run is not the recipe's result


def test_heldout_criterion_needs_every_language() -> None:
    m = {"heldout_loss_by_language": {"en": 4.0, "de": 5.0}, "config": {"languages": ["de", "en"]}}
    c = check_heldout(m)
    assert c.passed and c.figure == pytest.approx(4.5)
    c = check_heldout({**m, "config": {"languages": ["de", "en", "fr"]}})
    assert not c.passed and c.detail["missing"] == ["fr"]


def test_probe_criterion_is_the_accuracy_margin() -> None:
    metrics = {"test": {"accuracy": 0.90}, "random_init": {"test": {"accuracy": 0.75}}}
    c = check_probe(metrics)
    assert c.figure == pytest.approx(0.15) and c.passed
    metrics["random_init"]["test"]["accuracy"] = 0.85
    assert not check_probe(metrics).passed


def test_toxic_value_vectors_against_direct_weights() -> None:
    tok = make_tokenizer()
    model = make_model("gpt2", len(tok), n_layers=2, d_model=32, d_mlp=64)
    layer, neuron = 1, 7
    # GPT-2 Conv1D stores the down projection [d_mlp, d_model]: row i is value vector i.
    v = model.transformer.h[layer].mlp.c_proj.weight[neuron].detach()
    top = torch.topk(v @ model.transformer.wte.weight.detach().T, 20).indices.tolist()
    words = [tok.decode([t]) for t in top]
    lettered = [w for w in words if any(ch.isalpha() for ch in w)]  # a bad word has letters (tag_token's rule)
    flagged = {lettered[0], lettered[2], lettered[4]}
    c = toxic_value_vectors(wrap_bridge(model, tok), v, _SetLexicon(flagged), top_vectors=3, top_tokens=20,
                            min_toxic=2)
    first = c.detail["vectors"][0]
    assert (first["layer"], first["neuron"]) == (layer, neuron) and first["cosine"] == pytest.approx(1.0, abs=1e-5)
    assert first["toxic_tokens"] == [w for w in words if w in flagged] and first["n_toxic"] >= 3
    assert c.figure == sum(r["n_toxic"] >= 2 for r in c.detail["vectors"]) and not c.passed  # bar is 5


def _argmax_loop(model, tok, prompt: str, n: int) -> str:
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    for _ in range(n):
        with torch.no_grad():
            nxt = model(input_ids=ids).logits[0, -1].argmax()
        ids = torch.cat([ids, nxt.view(1, 1)], dim=1)
    return tok.decode(ids[0, len(tok(prompt)["input_ids"]):], skip_special_tokens=True)


def test_continuation_criterion_uses_greedy_continuations() -> None:
    """Criterion 5 decodes with the library's one greedy path; it equals a token-by-token argmax loop."""
    from types import SimpleNamespace

    from interp.app.quality import QualityConfig, check_continuations

    tok = make_tokenizer()
    model = make_model("gpt2", len(tok)).eval()
    texts = ["I want to go", "you are a stupid idiot and", "hello there", "la maison"]
    got = generate_with_intervention(wrap_bridge(model, tok), texts, None, 5)
    want = [_argmax_loop(model, tok, t, 5) for t in texts]
    assert got == want
    # A lexicon that hits the first continuation only: toxic prompts 0-1, clean prompts 2-3.
    lex = SimpleNamespace(hits=lambda text, lang: [text] if text == want[0] else [])
    prompts = [SimpleNamespace(id=f"p{i}", text=t, toxicity=4.0 if i < 2 else 1.0) for i, t in enumerate(texts)]
    c = check_continuations(wrap_bridge(model, tok), prompts, lex, QualityConfig(n_prompts=10, new_tokens=5))
    assert c.figure == pytest.approx(0.5) and c.detail["clean_prompt_rate"] == 0.0 and c.passed
    assert (c.detail["n_toxic_prompts"], c.detail["n_clean_prompts"]) == (2, 2)


def test_format_report_prints_pass_fail_lines() -> None:
    text = format_report([Criterion("toxic_value_vectors", 6, ">= 5", True, {"vectors": []}),
                          Criterion("probe_acc_minus_random_init", 0.05, ">= +0.10", False,
                                    {"test_accuracy": 0.8, "random_init_test_accuracy": 0.75, "n_test": 10})])
    assert text.splitlines()[0].startswith("PASS  toxic_value_vectors: 6")
    assert "FAIL  probe_acc_minus_random_init: 0.05" in text


def test_retrieval_criterion_is_the_best_layers_mean_over_languages() -> None:
    """Criterion 6 (issue 17's bar 1) against a hand-computed table: mean over languages, best layer, bar >= 0.25."""
    import pandas as pd

    from interp.app.quality import RETRIEVAL_BAR, check_retrieval

    rows = [{"lang": lang, "layer": layer, "acc_mean": acc}
            for lang, accs in {"de": (0.5, 0.1, 0.3), "fr": (0.1, 0.1, 0.2)}.items() for layer, acc in enumerate(accs)]
    c = check_retrieval(pd.DataFrame(rows))
    # layer means 0.30, 0.10, 0.25: the best layer is the embeddings (0); the best block is layer 2
    assert (c.detail["best_layer"], c.detail["best_block"], c.detail["n_languages"]) == (0, 2, 2)
    assert (c.figure, c.detail["best_block_figure"]) == (pytest.approx(0.30), pytest.approx(0.25)) and c.passed
    assert c.detail["by_layer"] == pytest.approx({0: 0.30, 1: 0.10, 2: 0.25})
    assert RETRIEVAL_BAR == 0.25

    def at(fig: float) -> bool:
        return check_retrieval(pd.DataFrame([{"lang": "de", "layer": 0, "acc_mean": fig}])).passed

    assert at(0.25) and not at(0.2499)
    text = format_report([c])
    assert text.startswith("PASS  retrieval_top1_best_layer: 0.3") and "best block L2 0.250" in text


def test_retrieval_criterion_on_translated_200_is_the_pipelines_retrieval(data_root, monkeypatch) -> None:
    """Criterion 6 runs bilingual retrieval on the 17 translated-200 files with English as pivot (16
    languages); with hand-made representations of clear margins its figure is known exactly."""
    import interp.crosslingual.retrieval as retrieval
    from interp.app.quality import retrieval_criterion
    from interp.crosslingual.retrieval import parallel_texts

    parallel = parallel_texts("translated200", root=data_root)
    assert len(parallel) == 17 and "en" in parallel
    n = len(parallel["en"])
    g = torch.Generator().manual_seed(0)
    anchor = torch.randn(n, 8, generator=g)
    # Layer 0: every language is the English vectors (retrieval 1.0); layer 1: noise, except de and fr
    # keep the first half of the rows (retrieval 0.5 there, about 1/n elsewhere).
    by_text = {}
    for lang, texts in parallel.items():
        noise = torch.randn(n, 8, generator=g)
        layer1 = noise.clone()
        if lang in ("en", "de", "fr"):
            layer1[: n // 2] = anchor[: n // 2] * 10
        by_text[tuple(texts)] = torch.stack([anchor, layer1])
    seen = []

    def fake_representations(model, texts, **kw):
        seen.append(len(texts))
        return by_text[tuple(texts)]

    monkeypatch.setattr(retrieval, "layer_representations", fake_representations)
    c = retrieval_criterion(object(), data_root, progress=False)
    assert len(seen) == 17 and c.detail["n_languages"] == 16
    assert (c.detail["best_layer"], c.figure, c.passed) == (0, pytest.approx(1.0), True)
    assert c.detail["best_block"] == 1 and 2 * 0.5 / 16 <= c.detail["best_block_figure"] < 2 * 0.5 / 16 + 0.05


def test_retrieval_criterion_without_translated_200_fails_naming_the_file(tmp_path) -> None:
    from interp.app.quality import retrieval_criterion

    c = retrieval_criterion(object(), tmp_path, progress=False)
    assert not c.passed and c.figure != c.figure and "translated" in c.detail["error"]
    assert "not measured" in format_report([c])
