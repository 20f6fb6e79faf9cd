"""Metric tests against hand-computed examples and an independent token-by-token perplexity."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from detox_train.evaluate import (Judge, ScoredSample, compare_tables, conditional_perplexity, distinct_n,
                                  language_metrics, repeat_rate, toxicity_summary, write_table)
from detox_train.evaluate.metrics import METRIC_COLUMNS


def _s(pid: str, j: int, score: float | None, text: str = "a b", lang: str = "en") -> ScoredSample:
    return ScoredSample(pid, lang, j, text, 2, score, score is None, "x" if score is None else None, "t@1")


def test_emt_toxprob_avgtox_by_hand() -> None:
    # prompt A: 0.1, 0.7 ; prompt B: 0.2, 0.4, (failed) ; prompt C: 0.5
    rows = [_s("A", 0, 0.1), _s("A", 1, 0.7), _s("B", 0, 0.2), _s("B", 1, 0.4), _s("B", 2, None), _s("C", 0, 0.5)]
    t = language_metrics(rows, n_boot=200)
    r = t.iloc[0]
    assert list(t.columns) == METRIC_COLUMNS
    assert (r.n_prompts, r.n_samples, r.n_failed) == (3, 6, 1)
    assert r.emt == pytest.approx((0.7 + 0.4 + 0.5) / 3)
    assert r.toxprob == pytest.approx(2 / 3)  # A (0.7) and C (0.5 counts: >= 0.5)
    assert r.avgtox == pytest.approx((0.1 + 0.7 + 0.2 + 0.4 + 0.5) / 5)  # failed excluded, not 0
    assert r.emt_lo <= r.emt <= r.emt_hi and r.toxprob_lo <= r.toxprob <= r.toxprob_hi
    assert r.avgtox_lo <= r.avgtox <= r.avgtox_hi


def test_grouping_by_prompt_id_not_text() -> None:
    # Two prompts with identical sample texts stay two prompts.
    rows = [_s("A", 0, 0.9, "same"), _s("B", 0, 0.1, "same")]
    r = language_metrics(rows, n_boot=50).iloc[0]
    assert r.n_prompts == 2 and r.emt == pytest.approx(0.5) and r.toxprob == pytest.approx(0.5)


def test_bootstrap_seeded_and_sensible() -> None:
    groups = [[0.0], [1.0]] * 50
    a = toxicity_summary(groups, n_boot=500, seed=3)
    b = toxicity_summary(groups, n_boot=500, seed=3)
    assert a == b
    assert a["emt"] == 0.5 and 0.35 < a["emt_lo"] < 0.5 < a["emt_hi"] < 0.65
    c = toxicity_summary([[0.3, 0.3]] * 10, n_boot=100)  # no variation -> degenerate CI
    assert c["emt_lo"] == c["emt_hi"] == pytest.approx(0.3)


def test_distinct_n_denominators_by_hand() -> None:
    texts = ["a b a", "a b c"]
    # unigrams: a b a a b c -> 3 unique / 6 total
    assert distinct_n(texts, 1) == pytest.approx(3 / 6)
    # bigrams: (a b) (b a) (a b) (b c) -> 3 unique / 4 total (the reference divided by 6)
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)
    # trigrams: (a b a) (a b c) -> 2 / 2
    assert distinct_n(texts, 3) == pytest.approx(1.0)
    assert math.isnan(distinct_n(["a"], 2))
    # zh counts characters
    assert distinct_n(["你好你"], 1, "zh") == pytest.approx(2 / 3)


def test_distinct_averaged_over_prompts_and_repeat_rate() -> None:
    rows = [_s("A", 0, 0.1, "x x"), _s("A", 1, 0.1, "x x"), _s("B", 0, 0.1, "p q r s")]
    r = language_metrics(rows, n_boot=10).iloc[0]
    assert r.distinct_1 == pytest.approx((1 / 4 + 4 / 4) / 2)
    assert repeat_rate("a b c a b c", 3) == pytest.approx(1 / 4)  # abc bca cab abc -> 1 repeat of 4
    assert repeat_rate("a b c d") == 0.0


def test_compare_tables_changes() -> None:
    before = pd.DataFrame([{c: 0.0 for c in METRIC_COLUMNS} | {"lang": "en", "emt": 0.5, "toxprob": 0.4}])
    after = pd.DataFrame([{c: 0.0 for c in METRIC_COLUMNS} | {"lang": "en", "emt": 0.2, "toxprob": 0.1}])
    cmp = compare_tables(before, after)
    en = cmp[cmp.lang == "en"].iloc[0]
    assert en.emt_change == pytest.approx(-0.3) and en.emt_change_pct == pytest.approx(-60.0)
    assert en.toxprob_change_pct == pytest.approx(-75.0)
    # The paper's outcome: the reduction, positive when toxicity falls (100 * (0.5 - 0.2) / 0.5).
    assert en.emt_reduction_pct == pytest.approx(60.0) and en.toxprob_reduction == pytest.approx(0.3)
    assert np.isnan(en.ppl_median_change_pct)  # before == 0 -> undefined, not inf
    with pytest.raises(ValueError, match="missing column"):
        compare_tables(before.drop(columns="emt"), after)


def test_write_table_csv_json(tmp_path) -> None:
    t = language_metrics([_s("A", 0, 0.3), _s("B", 0, None)], n_boot=10)
    csv, js = write_table(t, tmp_path / "m")
    back = pd.read_csv(csv)
    assert back.emt.iloc[0] == pytest.approx(0.3) and back.n_failed.iloc[0] == 1
    data = json.loads(js.read_text())
    assert data["rows"][0]["lang"] == "en" and data["rows"][0]["ppl_median"] is None
    assert "manifest" in data


def test_empty_input_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        language_metrics([])


def _nll_token_by_token(model, tok, prompt: str, cont: str) -> tuple[float, int]:
    """Independent reference: one unpadded forward per continuation token."""
    ids = tok(prompt)["input_ids"]
    c = tok(cont, add_special_tokens=False)["input_ids"]
    total = 0.0
    for t in c:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1].double()
        total -= float(logits.log_softmax(-1)[t])
        ids = ids + [t]
    return total, len(c)


@pytest.fixture(scope="module")
def tiny_lms(tiny_tokenizer) -> dict:
    from tiny_models import make_model

    return {fam: make_model(fam, len(tiny_tokenizer)) for fam in ("gpt2", "llama")}


@pytest.mark.parametrize("fam", ["gpt2", "llama"])
def test_conditional_ppl_matches_token_by_token(fam, tiny_tokenizer, tiny_lms) -> None:
    model = tiny_lms[fam]
    prompts = ["I want to", "the quick brown fox jumps over", "Ich"]
    conts = [" go home now", " the lazy dog", " will nach Hause gehen"]
    got = conditional_perplexity(model, prompts, conts, tokenizer=tiny_tokenizer, batch_size=3)
    for p, c, g in zip(prompts, conts, got):
        nll, n = _nll_token_by_token(model, tiny_tokenizer, p, c)
        assert g == pytest.approx(math.exp(nll / n), rel=1e-4)
    # The prompt matters (conditional, not unconditional).
    other = conditional_perplexity(model, ["you are a stupid"], [conts[0]], tokenizer=tiny_tokenizer)
    assert other[0] != pytest.approx(got[0], rel=1e-6)
    assert math.isnan(conditional_perplexity(model, ["x"], [""], tokenizer=tiny_tokenizer)[0])


def test_language_metrics_with_judge(tiny_tokenizer, tiny_lms) -> None:
    model = tiny_lms["gpt2"]
    rows = [_s("A", 0, 0.1, " go home"), _s("A", 1, 0.2, " the dog"), _s("B", 0, 0.3, " now")]
    judge = Judge(model, {"A": "I want to", "B": "you are"}, tokenizer=tiny_tokenizer)
    r = language_metrics(rows, judge=judge, n_boot=10).iloc[0]
    ppl = conditional_perplexity(model, ["I want to", "I want to", "you are"], [" go home", " the dog", " now"],
                                 tokenizer=tiny_tokenizer)
    assert r.ppl_median == pytest.approx(np.median(ppl)) and r.ppl_q1 <= r.ppl_median <= r.ppl_q3
    with pytest.raises(ValueError, match="no prompt text"):
        Judge(model, {"A": "x"}, tokenizer=tiny_tokenizer).perplexities(rows)
