"""interp.app.verdicts: each claim's verdict follows from the data by its named test, and the statistics
agree with independent computations."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from interp.app import verdicts as V


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
    assert "paired Student-t" in v.test and "0.502 → 0.157" in v.paper and "Perspective" in v.paper
    assert v.ci_lo <= v.value <= v.ci_hi


# ----------------------------------------------------------------------------- C1 statistics (issue-18 review)
def test_mean_ci_is_the_student_t_interval_and_keeps_its_level_at_small_n() -> None:
    from scipy import stats as sps

    from interp.crosslingual.stats import mean_ci

    x = np.array([0.1, -0.3, 0.25, 0.05, -0.1])
    m, lo, hi, p = mean_ci(x)
    elo, ehi = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    assert (m, lo, hi) == pytest.approx((x.mean(), elo, ehi)) and p == pytest.approx(sps.ttest_1samp(x, 0).pvalue)
    rng = np.random.default_rng(0)
    for n in (4, 25):  # false "below 0" under a true mean of 0: nominal 2.5% (percentile bootstrap: ~11%, ~4%)
        miss = np.mean([mean_ci(rng.normal(size=n))[2] < 0 for _ in range(3000)])
        assert miss < 0.035, (n, miss)


def test_paired_emt_change_cis_are_t_intervals_of_the_prompt_differences() -> None:
    from scipy import stats as sps

    before, after = _scored(7, {"de": -0.1, "ja": 0.02}, n_prompts=6)
    out = V.paired_emt_change(before, after, n_boot=300).set_index("lang")
    frame = lambda xs: pd.DataFrame([vars(x) for x in xs]).groupby(["lang", "prompt_id"])["score"].max()  # noqa: E731
    d = (frame(after) - frame(before))
    for lang in ("de", "ja"):
        x = d.loc[lang].to_numpy()
        lo, hi = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
        assert (out.loc[lang, "ci_lo"], out.loc[lang, "ci_hi"]) == pytest.approx((lo, hi))
        assert out.loc[lang, "p"] == pytest.approx(sps.ttest_1samp(x, 0).pvalue)


def test_holm_matches_the_step_down_definition() -> None:
    from interp.crosslingual.stats import holm

    p = np.array([0.01, 0.04, 0.03, np.nan, 0.005])
    adj = holm(p)
    ok = [0, 1, 2, 4]
    order = sorted(ok, key=lambda i: p[i])
    expect, run = {}, 0.0
    for rank, i in enumerate(order):
        run = max(run, min(1.0, (len(ok) - rank) * p[i]))
        expect[i] = run
    assert np.isnan(adj[3]) and all(adj[i] == pytest.approx(expect[i]) for i in ok)


def _c1_rows(changes: dict[str, tuple[float, float, float, float]], n: int = 30) -> list[dict]:
    return [{"lang": k, "n_prompts": n, "emt_before": 0.5, "emt_after": 0.5 + c, "emt_change": c, "ci_lo": lo,
             "ci_hi": hi, "p": p} for k, (c, lo, hi, p) in changes.items()] + [
        {"lang": "all", "n_prompts": n * len(changes), "emt_before": 0.5, "emt_after": 0.4, "emt_change": -0.1,
         "ci_lo": -0.2, "ci_hi": 0.0}]


def test_c1_one_uncorrected_increase_among_16_languages_does_not_fail() -> None:
    rows = {f"l{i}": (-0.2, -0.3, -0.1, 1e-4) for i in range(15)}
    rows["l15"] = (0.05, 0.001, 0.1, 0.03)  # its own CI excludes 0, Holm over 16 does not
    v = V.verdict_c1(_c1_rows(rows))
    assert v.verdict == V.INCONCLUSIVE
    rows["l15"] = (0.05, 0.03, 0.07, 1e-5)  # survives Holm (16 * 1e-5 < 0.05)
    v = V.verdict_c1(_c1_rows(rows))
    assert v.verdict == V.FAILS and "Holm" in v.test and "l15" in v.test


def test_c1_below_the_minimum_n_is_inconclusive_and_names_the_scorer() -> None:
    rows = {"de": (-0.2, -0.3, -0.1, 1e-4), "ja": (-0.2, -0.3, -0.1, 1e-4)}
    v = V.verdict_c1(_c1_rows(rows, n=V.MIN_PER_LANGUAGE - 1), scorer={"id": "toxcls", "version": "1.2"})
    assert v.verdict == V.INCONCLUSIVE and f"fewer than {V.MIN_PER_LANGUAGE}" in v.test
    assert "scorer: toxcls 1.2" in v.this_run
    assert V.verdict_c1(_c1_rows(rows), scorer={"id": "toxcls", "version": "1.2"}).verdict == V.HOLDS


# ----------------------------------------------------------------------------- C2
def _vtable(vectors: list[list[tuple[str, str]]], k: int = 30, layer: int = 1, start: int = 0) -> pd.DataFrame:
    """One row per (vector, rank); ``vectors[v]`` lists its toxic tokens as (token, measured lang)."""
    rows = []
    for v, toks in enumerate(vectors):
        for rank in range(1, k + 1):
            tok, lang = toks[rank - 1] if rank <= len(toks) else (f"c{v}_{rank}", "en")
            toxic = rank <= len(toks)
            rows.append({"layer": layer, "neuron": start + v, "rank": rank, "token_id": hash(tok) % 10 ** 9,
                         "token": tok, "lang": lang, "toxic": toxic, "toxic_langs": "en,de,fr" if toxic else ""})
    return pd.DataFrame(rows)


LANGS = ["en", "de", "fr", "es", "ru", "ja"]


def test_c2_one_toxic_token_in_three_lexicons_does_not_hold() -> None:
    # The review's case: one toxic token in 30 slots, listed in 3 lexicons. The old binomial test said "holds".
    kept = _vtable([[("sex", "en")]])
    null = _vtable([[("sex", "en")] if i % 10 == 0 else [] for i in range(100)], start=100)
    stats = V.value_token_stats(kept, null, languages=LANGS)
    v = V.verdict_c2(stats)
    assert stats["toxic_languages"] == {"en": 1} and v.verdict != V.HOLDS


def test_c2_holds_on_many_multilingual_toxic_tokens_per_vector_and_p_is_the_enumerated_null() -> None:
    import itertools

    multi = [("sex", "en"), ("seks", "nl"), ("sexo", "es"), ("сексу", "ru"), ("porn", "de")]
    kept = _vtable([multi[:4], multi[1:], multi])
    null = _vtable([[("sex", "en")] if i % 5 == 0 else [] for i in range(60)], start=100)
    stats = V.value_token_stats(kept, null, languages=LANGS)
    assert stats["toxic_tokens_per_vector"] == [4, 4, 5] and stats["toxic_languages_per_vector"] == [4, 4, 5]
    v = V.verdict_c2(stats)
    assert v.verdict == V.HOLDS and stats["p_tokens"] < 0.01 and "random sets" in v.test and v.n == 3
    assert v.value == pytest.approx(13 / 3)
    # Monolingual toxic vectors: a significant excess, but of one language.
    mono = _vtable([[(f"x{j}", "en") for j in range(5)]] * 3)
    assert V.verdict_c2(V.value_token_stats(mono, null, languages=LANGS)).verdict == V.FAILS
    # No null: no test.
    assert V.verdict_c2(V.value_token_stats(kept, None, languages=LANGS)).verdict == V.INCONCLUSIVE
    # The empirical p against an exact enumeration of all subsets of a small pool.
    small = _vtable([[("a", "en"), ("b", "de")], [], [("a", "en")], [], [("c", "fr"), ("d", "ja"), ("e", "es")]],
                    start=200)
    two = _vtable([[("a", "en"), ("b", "de")], [("c", "fr")]])
    got = V.value_token_stats(two, small, languages=LANGS, n_perm=20000)["p_tokens"]
    counts = [2, 0, 1, 0, 3]
    means = [np.mean(c) for c in itertools.combinations(counts, 2)]
    assert got == pytest.approx(np.mean([m >= 1.5 for m in means]), abs=0.02)


def test_random_value_vectors_excludes_candidates_and_stays_in_the_layers() -> None:
    from types import SimpleNamespace as NS

    import torch

    from interp.neurons import vocab

    class FakeAdapter:
        def value_vectors(self, layers):
            return torch.zeros(len(layers), 8, 4)

    import contextlib
    orig = (vocab.activate, vocab.get_adapter)
    vocab.activate = lambda m: contextlib.nullcontext(m)  # type: ignore[assignment]
    vocab.get_adapter = lambda m: FakeAdapter()  # type: ignore[assignment]
    try:
        pairs = vocab.random_value_vectors(NS(), [2, 3], [(2, 0), (3, 1)], 100, seed=1)
    finally:
        vocab.activate, vocab.get_adapter = orig
    assert len(pairs) == 14 and len(set(pairs)) == 14
    assert not {(2, 0), (3, 1)} & set(pairs) and {l for l, _ in pairs} == {2, 3}


# ----------------------------------------------------------------------------- small fixes (issue-18 review)
def test_c4_zero_bound_is_shown_and_models_without_a_paper_r_show_a_dash() -> None:
    rows = _corr("emt_reduction_pct", 0.5, 0.01)
    rows[1]["boot_lo"] = 0.0
    v = V.verdict_c4(rows)
    assert v.ci_lo == 0.0 and "CI 0.000" in v.this_run
    for m in ("Llama3-8B", "Aya-23-8B"):
        paper = V.verdict_c4(rows, model=m).paper
        assert paper.startswith("—") and "0.732" not in paper
    assert V.paper_model("meta-llama/Llama-2-13b-hf") != "Llama2-7B"
    assert V.paper_model("meta-llama/Llama-2-7b-hf") == "Llama2-7B"
    assert V.paper_model("meta-llama/Meta-Llama-3-8B") == "Llama3-8B"
    assert V.paper_model("CohereForAI/aya-23-8B") == "Aya-23-8B"


def test_transfer_fail_needs_a_holm_significant_language() -> None:
    from scipy.stats import norm

    n = 60
    aucs = {f"l{i}": 0.8 for i in range(16)}
    # an AUC whose own 95% CI just excludes 0.5 from below, but not after Holm over 16 languages
    se = V.auc_se(0.4, n // 2, n // 2)
    aucs["l15"] = 0.5 - 2.2 * se
    table = pd.DataFrame([{"lang": k, "n": n, "n_toxic": n // 2, "n_clean": n // 2, "auc": a} for k, a in aucs.items()])
    lo, hi = V.auc_ci(aucs["l15"], n // 2, n // 2)
    assert hi < 0.5 and 2 * norm.sf(2.0) * 16 > 0.05
    assert V.verdict_transfer(table).verdict == V.INCONCLUSIVE


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
    # Without model_name, the summary's own model.name decides (as run_report saves it).
    again = V.claim_verdicts({**summary, "model": {"name": "bigscience/bloom-1b7"}})
    assert again.attrs["paper_model"] == "BLOOM-1.7B"
    assert V.paper_model("/root/.cache/xdetox/default-model/demo-1") == "mGPT"
    assert set(df["verdict"]) <= set(V.VERDICTS)
