"""interp.verdicts: each claim's verdict follows from the data by its named test, and the statistics
agree with independent computations."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from interp import verdicts as V


def _samples(rows: list[tuple[str, str, float]], failed: set[int] = frozenset()) -> list[SimpleNamespace]:
    return [SimpleNamespace(lang=lang, prompt_id=pid, score=s, failed=i in failed)
            for i, (lang, pid, s) in enumerate(rows)]


def _scored(seed: int, shift: dict[str, float], n_prompts: int = 30, k: int = 3):
    rng = np.random.default_rng(seed)
    before, after = [], []
    for lang, d in shift.items():
        for p in range(n_prompts):
            base = rng.uniform(0.2, 0.8, size=k)
            noise = rng.normal(0, 0.01, size=k)
            for s_b, s_a in zip(base, np.clip(base + d + noise, 0, 1)):
                before.append((lang, f"{lang}:{p}", float(s_b)))
                after.append((lang, f"{lang}:{p}", float(s_a)))
    return _samples(before), _samples(after)


# ----------------------------------------------------------------------------- C1
def test_paired_emt_change_matches_an_independent_groupby_and_language_metrics() -> None:
    from detox_train.evaluate.metrics import language_metrics
    from detox_train.evaluate.scoring import ScoredSample

    before, after = _scored(0, {"de": -0.2, "ja": 0.0, "ru": 0.05})
    out = V.paired_emt_change(before, after, n_boot=500, seed=1).set_index("lang")
    frame = lambda xs: pd.DataFrame([vars(x) for x in xs])  # noqa: E731
    mb = frame(before).groupby(["lang", "prompt_id"])["score"].max().groupby("lang").mean()
    ma = frame(after).groupby(["lang", "prompt_id"])["score"].max().groupby("lang").mean()
    np.testing.assert_allclose(out.loc[["de", "ja", "ru"], "emt_change"], (ma - mb).loc[["de", "ja", "ru"]], atol=1e-12)
    assert out.loc["all", "emt_change"] == pytest.approx((ma - mb).mean())
    # The EMT itself is the one language_metrics reports.
    recs = [ScoredSample(prompt_id=s.prompt_id, lang=s.lang, sample_index=0, text="", n_tokens=0, score=s.score,
                         failed=False, error=None, scorer="x") for s in before]
    lm = language_metrics(recs, n_boot=10).set_index("lang")
    np.testing.assert_allclose(out.loc[["de", "ja", "ru"], "emt_before"], lm.loc[["de", "ja", "ru"], "emt"], atol=1e-12)
    assert (out["ci_lo"] <= out["emt_change"]).all() and (out["emt_change"] <= out["ci_hi"]).all()
    assert out.loc["de", "ci_hi"] < 0 < out.loc["ru", "ci_lo"]


def test_paired_emt_change_pairs_by_prompt_and_skips_failed() -> None:
    before = _samples([("de", "a", 0.9), ("de", "a", 0.1), ("de", "b", 0.5), ("de", "c", 0.7)])
    after = _samples([("de", "a", 0.3), ("de", "a", 0.99), ("de", "b", 0.4)], failed={1})  # 0.99 failed; c unpaired
    out = V.paired_emt_change(before, after, n_boot=200).set_index("lang")
    assert out.loc["de", "n_prompts"] == 2
    assert out.loc["de", "emt_change"] == pytest.approx(((0.3 - 0.9) + (0.4 - 0.5)) / 2)
    with pytest.raises(ValueError, match="no prompt has valid scores"):
        V.paired_emt_change(before, _samples([("de", "z", 0.1)]))


@pytest.mark.parametrize("shift,verdict", [({"de": -0.3, "ja": -0.2}, V.HOLDS),
                                           ({"de": -0.3, "ja": 0.2}, V.FAILS),
                                           ({"de": -0.3, "ja": 0.0}, V.INCONCLUSIVE)])
def test_c1_verdict_follows_the_per_language_cis(shift: dict[str, float], verdict: str) -> None:
    before, after = _scored(3, shift)
    v = V.verdict_c1(V.paired_emt_change(before, after, n_boot=500))
    assert v.verdict == verdict and v.claim == "C1" and v.n == 60
    assert "paired bootstrap" in v.test and "0.502 → 0.157" in v.paper
    assert v.ci_lo <= v.value <= v.ci_hi


# ----------------------------------------------------------------------------- C2
def _vocab(toxic_langs_per_vector: list[list[str]], k: int = 10) -> pd.DataFrame:
    rows = []
    for v, langs in enumerate(toxic_langs_per_vector):
        for rank in range(1, k + 1):
            lang = langs[rank - 1] if rank <= len(langs) else ""
            rows.append({"layer": 1, "neuron": v, "rank": rank, "token": f"t{v}_{rank}", "toxic": bool(lang),
                         "toxic_langs": lang})
    return pd.DataFrame(rows)


def test_c2_counts_and_verdicts() -> None:
    many = _vocab([["en", "de", "ru"], ["es", "en"], ["ru"], []])
    stats = V.value_token_stats(many, vocab_toxic_share=0.01, vocab_tokens=5000)
    assert stats["n_tokens"] == 40 and stats["n_toxic_tokens"] == 6 and stats["n_vectors"] == 4
    assert stats["toxic_languages"] == {"de": 1, "en": 2, "es": 1, "ru": 2}
    assert V.verdict_c2(stats).verdict == V.HOLDS
    # The same tokens are no evidence when the vocabulary is as toxic as they are.
    assert V.verdict_c2({**stats, "vocab_toxic_share": 0.15}).verdict == V.INCONCLUSIVE
    one = V.value_token_stats(_vocab([["en", "en"], ["en"]]), vocab_toxic_share=0.01, vocab_tokens=5000)
    assert V.verdict_c2(one).verdict == V.FAILS
    none = V.verdict_c2({**stats, "vocab_toxic_share": None})
    assert none.verdict == V.INCONCLUSIVE and "no vocabulary base rate" in none.test
    v = V.verdict_c2(stats)
    from scipy.stats import binom

    assert f"p = {binom.sf(5, 40, 0.01):.3g}" in v.test  # P(X >= 6), computed directly
    assert v.ci_lo < 6 / 40 < v.ci_hi


# ----------------------------------------------------------------------------- C3
def _keys(base: dict[str, float], dpo: dict[str, float], half: float = 0.01) -> list[dict]:
    return [{"model": m, "lang": lang, "mean": x, "ci_lo": x - half, "ci_hi": x + half, "n_prompts": 10}
            for m, d in (("base", base), ("dpo", dpo)) for lang, x in d.items()]


def test_c3_verdicts() -> None:
    base = {"en": 0.10, "de": 0.08, "ja": 0.07, "ar": 0.05}
    assert V.verdict_c3(_keys(base, {k: v - 0.1 for k, v in base.items()})).verdict == V.HOLDS
    # DPO lowers everywhere but the keys fire only in English: not "many languages".
    only_en = {"en": 0.1, "de": -0.05, "ja": -0.05, "ar": -0.05}
    assert V.verdict_c3(_keys(only_en, {k: v - 0.1 for k, v in only_en.items()})).verdict == V.FAILS
    raised = V.verdict_c3(_keys(base, {**{k: v - 0.1 for k, v in base.items()}, "ar": 0.2}))
    assert raised.verdict == V.FAILS and "wholly above in ar" in raised.test
    assert V.verdict_c3(_keys(base, {**{k: v - 0.1 for k, v in base.items()}, "ar": 0.05})).verdict == V.INCONCLUSIVE
    v = V.verdict_c3(_keys(base, {k: v - 0.1 for k, v in base.items()}))
    assert v.value == pytest.approx(-0.1) and v.n == 40
    assert V.verdict_c3([]).verdict == V.INCONCLUSIVE


# ----------------------------------------------------------------------------- C4
def _corr(outcome: str, r: float, p: float, **kw) -> list[dict]:
    return [{"signal": "value_mass", "outcome": outcome, "n": 9, "pearson_r": 0.0, "perm_p": 1.0},
            {"signal": "retrieval_acc", "outcome": outcome, "n": 9, "pearson_r": r, "perm_p": p,
             "boot_lo": r - 0.2, "boot_hi": min(r + 0.2, 1.0), **kw}]


@pytest.mark.parametrize("outcome,r,p,verdict,r_red", [
    ("emt_change_pct", -0.8, 0.01, V.HOLDS, 0.8),      # after - before: the sign flips to a reduction
    ("emt_reduction_pct", 0.8, 0.01, V.HOLDS, 0.8),    # already a reduction (the paper's sign)
    ("emt_reduction_pct", -0.8, 0.01, V.FAILS, -0.8),
    ("emt_change_pct", -0.8, 0.3, V.INCONCLUSIVE, 0.8),
])
def test_c4_reads_the_reduction_by_name(outcome: str, r: float, p: float, verdict: str, r_red: float) -> None:
    v = V.verdict_c4(_corr(outcome, r, p))
    assert v.verdict == verdict and v.value == pytest.approx(r_red) and v.n == 9
    assert v.ci_lo <= v.value <= v.ci_hi and "permutation" in v.test


def test_c4_skipped_or_missing_is_inconclusive() -> None:
    skipped = [{"signal": "retrieval_acc", "outcome": "emt_change_pct", "n": 2,
                "skipped": "only 2 languages with finite values"}]
    v = V.verdict_c4(skipped)
    assert v.verdict == V.INCONCLUSIVE and "only 2 languages" in v.test
    assert V.verdict_c4([]).verdict == V.INCONCLUSIVE


# ----------------------------------------------------------------------------- P
def test_auc_ci_matches_a_bootstrap() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = np.r_[np.ones(80), np.zeros(120)].astype(int)
    s = rng.normal(size=200) + 1.2 * y
    auc = roc_auc_score(y, s)
    lo, hi = V.auc_ci(auc, 80, 120)
    boot = []
    for _ in range(2000):
        i = rng.integers(0, 200, 200)
        if 0 < y[i].sum() < 200:
            boot.append(roc_auc_score(y[i], s[i]))
    blo, bhi = np.percentile(boot, [2.5, 97.5])
    assert abs((hi - lo) - (bhi - blo)) < 0.25 * (bhi - blo)  # same width within 25%
    assert lo < auc < hi


def test_transfer_verdicts() -> None:
    def table(aucs: dict[str, float], n: int = 200) -> pd.DataFrame:
        return pd.DataFrame([{"lang": k, "n": n, "n_toxic": n // 2, "n_clean": n // 2, "auc": a} for k, a in aucs.items()])

    assert V.verdict_transfer(table({"en": 0.9, "de": 0.8, "ja": 0.75})).verdict == V.HOLDS
    assert V.verdict_transfer(table({"en": 0.9, "de": 0.8, "ja": 0.3})).verdict == V.FAILS
    assert V.verdict_transfer(table({"en": 0.9, "de": 0.8, "ja": 0.52})).verdict == V.INCONCLUSIVE
    # English is the training language, not a transfer target.
    assert V.verdict_transfer(table({"en": 0.2, "de": 0.8})).verdict == V.HOLDS


def test_claim_verdicts_reads_the_summary_by_name_and_adds_the_encoder_row() -> None:
    before, after = _scored(5, {"de": -0.3, "ja": -0.3})
    summary = {"toxicity_change_paired": V.paired_emt_change(before, after).to_dict(orient="records"),
               "correlation": _corr("emt_change_pct", -0.9, 0.001),
               "encoder_analysis": {"name": "multilingual-e5-small",
                           "probe_transfer": [{"lang": "de", "n": 100, "n_toxic": 50, "n_clean": 50, "auc": 0.9}]}}
    df = V.claim_verdicts(summary, model_name="bigscience/bloom-1b7")
    assert list(df["claim"]) == ["C1", "C2", "C3", "C4", "P", "P-enc"]
    got = dict(zip(df["claim"], df["verdict"]))
    assert got == {"C1": V.HOLDS, "C2": V.INCONCLUSIVE, "C3": V.INCONCLUSIVE, "C4": V.HOLDS, "P": V.INCONCLUSIVE,
                   "P-enc": V.HOLDS}
    assert df.attrs["paper_model"] == "BLOOM-1.7B"
    assert "0.493 → 0.185" in df.loc[0, "paper"] and "r = 0.590" in df.loc[3, "paper"]
    assert V.paper_model("/root/.cache/xdetox/default-model/demo-1") == "mGPT"
    assert set(df["verdict"]) <= set(V.VERDICTS)
