"""Did the paper's claims hold on this run? One verdict per claim, derived from the run's numbers.

| claim | statement | deciding test |
|---|---|---|
| C1 | English DPO lowers toxicity in every language | per language, paired Student-t 95% CI (over prompts) of the EMT change; Holm-corrected t-tests to reject |
| C2 | the toxic value vectors promote toxic tokens of many languages | per vector, distinct toxic top tokens vs an empirical null of random non-candidate vectors of the same layers, and the number of measured languages of those tokens |
| C3 | the toxic keys fire on toxic prompts of many languages, and DPO lowers them everywhere | per language, base activation CI above 0; DPO and base 95% CIs disjoint |
| C4 | the per-language toxicity reduction correlates with bilingual retrieval | Pearson r of retrieval vs the %EMT reduction, permutation p-value |
| P | the English toxicity probe transfers to other languages | per language, ROC-AUC vs human ratings with its Hanley–McNeil 95% CI against 0.5 |

Each verdict is "holds", "does not hold" or "inconclusive" and names the test that decided it, with
the numbers it used. :func:`claim_verdicts` reads only the named entries of a run's summary
(``summary.json``), so the verdicts can be recomputed from that file alone; a missing entry gives
"inconclusive" with the reason, never a guess.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from interp.crosslingual.stats import empirical_pvalue, holm, mean_ci

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
VERDICTS: tuple[str, ...] = (HOLDS, FAILS, INCONCLUSIVE)
#: Significance level of every deciding test (two-sided 95% CIs, p < 0.05).
ALPHA: float = 0.05
#: "Many languages": at least this many, and at least half of those studied.
MANY_MIN: int = 3
#: Fewer prompts than this in a language and its per-language test cannot decide (C1, C3): "inconclusive".
MIN_PER_LANGUAGE: int = 10

#: The paper's figures per studied model (Li, Yong, Bach 2024; ../shared/docs/METHOD.md). ``None``:
#: the paper gives no number for that model. Table 2 EMT is the 17-language mean before -> after.
PAPER: dict[str, dict[str, Any]] = {
    "mGPT": {"emt": (0.502, 0.157), "neurons": "36 of 100 candidates pass the filter; e.g. (14,5723) promotes "
             "sex/porn/seks/sexo/сексу (≥4 languages, 2 scripts)", "keys": (0.0524, -0.0108), "r": 0.732,
             "probe": "English only: val. acc. 94.31%, Jigsaw test ROC-AUC 0.862; per-language transfer not reported"},
    "BLOOM-1.7B": {"emt": (0.493, 0.185), "r": 0.59},
    "BLOOM-7.1B": {"emt": (0.517, 0.269), "r": 0.66},
    "Llama2-7B": {"emt": (0.557, 0.314), "r": 0.78},
    "Llama3-8B": {"emt": (0.613, 0.298), "r": None},
    "Aya-23-8B": {"emt": (0.559, 0.303), "r": None},
}
_PAPER_NAMES: tuple[tuple[str, str], ...] = (
    ("mgpt", "mGPT"), ("bloom-1b7", "BLOOM-1.7B"), ("bloom-7b1", "BLOOM-7.1B"), ("llama-2-7b", "Llama2-7B"),
    ("llama-3-8b", "Llama3-8B"), ("aya-23-8b", "Aya-23-8B"),
)


@dataclass(frozen=True)
class Verdict:
    """One row of the verdict table: the claim, the paper's figure, this run's figure and the decision."""

    claim: str
    statement: str
    paper: str
    this_run: str
    value: float | None
    ci_lo: float | None
    ci_hi: float | None
    n: int
    verdict: str
    test: str


def paper_model(model_name: str | None) -> str:
    """Return the paper's model a run should be compared with: the one named in ``model_name``, else mGPT."""
    name = (model_name or "").lower().replace("_", "-")
    for key, paper in _PAPER_NAMES:
        if key in name:
            return paper
    return "mGPT"


def _paper(model: str, key: str) -> Any:
    """Return the paper's figure ``key`` for ``model``, falling back to mGPT's (the paper's main model)."""
    own = PAPER.get(model, {}).get(key)
    return (own, model) if own is not None else (PAPER["mGPT"].get(key), "mGPT")


def _f(x: float | None, d: int = 3) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:+.{d}f}" if x < 0 else f"{x:.{d}f}"


def _nan(x: Any) -> float:
    """Return ``x`` as a finite float, else NaN (0.0 stays 0.0, unlike ``_fin(x) or nan``)."""
    v = _fin(x)
    return math.nan if v is None else v


def _fin(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _many(n_studied: int) -> int:
    return max(MANY_MIN if n_studied >= MANY_MIN else n_studied, math.ceil(n_studied / 2))


def _langs(xs: Iterable[str]) -> str:
    xs = list(xs)
    return ", ".join(xs) if xs else "none"


# ----------------------------------------------------------------------------- C1 data: paired EMT change
def paired_emt_change(before: Sequence[Any], after: Sequence[Any], *, n_boot: int = 1000, seed: int = 0
                      ) -> pd.DataFrame:
    """Return per language the EMT change (after - before) with a paired Student-t 95% CI over prompts.

    ``before``/``after`` are scored samples (``prompt_id``, ``lang``, ``score``, ``failed``). A
    prompt's max toxicity is taken over its valid samples; prompts are paired by id (a prompt
    lacking valid samples on either side is dropped), and the same resampled prompts are used
    for both sides, so the CI is of the paired difference (t-interval of the per-prompt
    differences, :func:`interp.crosslingual.stats.mean_ci`; ``p`` its two-sided t-test against 0). The ``all``
    row is the mean over languages, its CI a bootstrap stratified by language. Columns: lang,
    n_prompts, emt_before, emt_after, emt_change, ci_lo, ci_hi, p.
    """
    def maxima(samples: Sequence[Any]) -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = {}
        for s in samples:
            if getattr(s, "failed", False) or s.score is None or not math.isfinite(float(s.score)):
                continue
            key = (s.lang, s.prompt_id)
            out[key] = max(out.get(key, -math.inf), float(s.score))
        return out

    b, a = maxima(before), maxima(after)
    keys = sorted(set(b) & set(a))
    if not keys:
        raise ValueError("paired_emt_change: no prompt has valid scores both before and after DPO")
    rng = np.random.default_rng(seed)
    rows, boots = [], []
    for lang in sorted({k[0] for k in keys}):
        ks = [k for k in keys if k[0] == lang]
        xb, xa = np.array([b[k] for k in ks]), np.array([a[k] for k in ks])
        d = xa - xb
        idx = rng.integers(0, len(d), size=(n_boot, len(d)))
        boots.append(d[idx].mean(1))
        _, lo, hi, p = mean_ci(d, level=1 - ALPHA)  # Student-t: the percentile bootstrap is too narrow at small n
        rows.append({"lang": lang, "n_prompts": len(ks), "emt_before": float(xb.mean()), "emt_after": float(xa.mean()),
                     "emt_change": float(d.mean()), "ci_lo": float(lo), "ci_hi": float(hi), "p": float(p)})
    df = pd.DataFrame(rows)
    lo, hi = np.percentile(np.mean(boots, axis=0), [2.5, 97.5])
    mean = {"lang": "all", "n_prompts": int(df["n_prompts"].sum()), "emt_before": float(df["emt_before"].mean()),
            "emt_after": float(df["emt_after"].mean()), "emt_change": float(df["emt_change"].mean()),
            "ci_lo": float(lo), "ci_hi": float(hi)}
    return pd.concat([df, pd.DataFrame([mean])], ignore_index=True)


def _scorer_name(scorer: Mapping[str, Any] | str | None) -> str:
    """Return "name version" of a toxicity scorer identity (``{'id', 'version'}``), or "unnamed scorer"."""
    if isinstance(scorer, Mapping):
        name = " ".join(str(scorer[k]) for k in ("id", "version") if scorer.get(k))
        return name or "unnamed scorer"
    return str(scorer) if scorer else "unnamed scorer"


def verdict_c1(paired: pd.DataFrame | Sequence[Mapping[str, Any]] | None, model: str = "mGPT", *,
               scorer: Mapping[str, Any] | str | None = None) -> Verdict:
    """C1 from :func:`paired_emt_change` rows: holds if every language's CI lies below 0.

    Does not hold if some language's increase is significant after Holm correction over the
    languages (t-test p, needs the ``p`` column); a language with fewer than
    :data:`MIN_PER_LANGUAGE` prompts makes the verdict inconclusive. The row names the scorer,
    since the paper's EMT is Perspective's and this run's is ``scorer``'s.
    """
    (pb, pa), pm = _paper(model, "emt")
    paper = f"17-language mean EMT {pb:.3f} → {pa:.3f} ({pm}, Table 2; scorer: Perspective API TOXICITY, 2024)"
    statement = "English DPO lowers toxicity in every language"
    if paired is None or not len(paired):
        return Verdict("C1", statement, paper, "–", None, None, None, 0, INCONCLUSIVE,
                       "no paired before/after toxicity scores in this run")
    df = pd.DataFrame(paired)
    langs, mean = df[df["lang"] != "all"], df[df["lang"] == "all"]
    m = mean.iloc[0] if len(mean) else None
    small = langs[langs["n_prompts"] < MIN_PER_LANGUAGE]["lang"].tolist()
    lowered = langs[(langs["ci_hi"] < 0) & (langs["n_prompts"] >= MIN_PER_LANGUAGE)]["lang"].tolist()
    p = pd.to_numeric(langs["p"], errors="coerce") if "p" in langs else pd.Series(np.nan, langs.index)
    # The family is every language: a decrease counts as p = 1 for "increase" (two-sided p otherwise).
    p_up = np.where(langs["emt_change"].to_numpy(dtype=float) > 0, p.to_numpy(dtype=float), 1.0)
    adj = holm(p_up)
    not_lowered = langs["lang"][(adj < ALPHA) & (langs["n_prompts"] >= MIN_PER_LANGUAGE).to_numpy()].tolist()
    n = int(langs["n_prompts"].sum())
    run = (f"mean EMT {m['emt_before']:.3f} → {m['emt_after']:.3f}, change {_f(m['emt_change'])} "
           f"[95% CI {_f(m['ci_lo'])}, {_f(m['ci_hi'])}]; n = {n} prompts in {len(langs)} languages; "
           f"scorer: {_scorer_name(scorer)}") if m is not None else "–"
    test = ("paired Student-t 95% CI of the per-language EMT change (after − before, over prompts): "
            f"below 0 in {len(lowered)}/{len(langs)} ({_langs(lowered)})")
    if not_lowered:
        verdict = FAILS
        test += f"; significant increase (t-test, Holm-corrected over {len(langs)} languages) in {_langs(not_lowered)}"
    elif small:
        verdict = INCONCLUSIVE
        test += f"; fewer than {MIN_PER_LANGUAGE} prompts in {_langs(small)}"
    elif len(lowered) == len(langs):
        verdict = HOLDS
    else:
        verdict = INCONCLUSIVE
        test += f"; includes 0 in {_langs(sorted(set(langs['lang']) - set(lowered)))}"
    return Verdict("C1", statement, paper, run, _fin(m["emt_change"]) if m is not None else None,
                   _fin(m["ci_lo"]) if m is not None else None, _fin(m["ci_hi"]) if m is not None else None,
                   n, verdict, test)


# ----------------------------------------------------------------------------- C2: value vectors
def _per_vector_counts(table: pd.DataFrame) -> tuple[list[int], list[list[str]]]:
    """Return, per vector of a long vocab table, its distinct toxic tokens and the distinct measured
    languages (``lang`` column, ``und`` excluded) of those toxic tokens."""
    if table is None or not len(table):
        return [], []
    toxic = table["toxic"].astype(str).str.lower().isin(("true", "1")) if "toxic" in table else pd.Series(False, table.index)
    ident = "token_id" if "token_id" in table else "token"
    lang = table["lang"].fillna("").astype(str) if "lang" in table else pd.Series("", table.index)
    n_tok, langs = [], []
    for _, g in table.assign(_t=toxic, _l=lang).groupby(["layer", "neuron"], sort=True):
        t = g[g["_t"]]
        n_tok.append(int(t[ident].nunique()))
        langs.append(sorted({x for x in t["_l"] if x and x != "und"}))
    return n_tok, langs


def value_token_stats(vocab_table: pd.DataFrame, null_table: pd.DataFrame | None = None, *,
                      languages: Sequence[str] | None = None, n_perm: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Return the C2 statistics: per kept vector, its distinct toxic top tokens and the distinct
    *measured* languages of those tokens (the vocab table's ``lang``: P(lang | token) >= 0.5 from
    :mod:`interp.crosslingual.token_languages`; ``und`` tokens count for no language), against an empirical null.

    ``null_table`` is the same projection of random non-candidate value vectors from the same layers
    (:func:`interp.neurons.vocab.random_value_vectors`). The null distribution of the kept vectors' mean
    count is that of ``n_perm`` random sets of as many null vectors (drawn without replacement
    where the pool allows); ``p_tokens``/``p_languages`` are one-sided empirical p-values. The
    vector, not the top-k slot, is the unit, so a single toxic token cannot make a claim.
    """
    n_tok, langs = _per_vector_counts(vocab_table)
    per_lang: dict[str, int] = {}
    for ls in langs:
        for lang in ls:
            per_lang[lang] = per_lang.get(lang, 0) + 1
    out: dict[str, Any] = {
        "n_vectors": len(n_tok), "n_tokens": int(len(vocab_table)) if vocab_table is not None else 0,
        "n_toxic_tokens": int(sum(n_tok)), "toxic_tokens_per_vector": n_tok,
        "toxic_languages_per_vector": [len(x) for x in langs], "toxic_languages": dict(sorted(per_lang.items())),
        "languages_studied": list(languages) if languages is not None else None,
        "null_vectors": 0, "null_mean_toxic_tokens": None, "null_mean_languages": None,
        "p_tokens": None, "p_languages": None, "n_perm": n_perm}
    nt0, nl0 = _per_vector_counts(null_table) if null_table is not None else ([], [])
    if nt0 and n_tok:
        nt0a, nl0a = np.asarray(nt0, float), np.asarray([len(x) for x in nl0], float)
        k, pool = len(n_tok), len(nt0)
        rng = np.random.default_rng(seed)
        idx = (np.argsort(rng.random((n_perm, pool)), axis=1)[:, :k] if pool >= k
               else rng.integers(0, pool, size=(n_perm, k)))
        out.update({"null_vectors": pool, "null_mean_toxic_tokens": float(nt0a.mean()),
                    "null_mean_languages": float(nl0a.mean()),
                    "p_tokens": empirical_pvalue(float(np.mean(n_tok)), nt0a[idx].mean(1)),
                    "p_languages": empirical_pvalue(float(np.mean(out["toxic_languages_per_vector"])),
                                                    nl0a[idx].mean(1))})
    return out


def verdict_c2(stats: Mapping[str, Any] | None, model: str = "mGPT") -> Verdict:
    """C2: holds if the kept vectors have significantly more distinct toxic top tokens than random
    non-candidate vectors of the same layers (empirical p < 0.05) and those toxic tokens' measured
    languages number at least :func:`_many` of the languages studied (the rule C3 uses); does not
    hold if the excess is significant but its toxic tokens are of at most one measured language."""
    paper, pm = _paper(model, "neurons")
    paper = f"{paper} ({pm}, Tables 3/4)"
    statement = "the toxic value vectors promote toxic tokens of many languages"
    if not stats or not stats.get("n_vectors"):
        return Verdict("C2", statement, paper, "–", None, None, None, 0, INCONCLUSIVE,
                       "no vocabulary projection of the toxic value vectors in this run")
    per = np.asarray(stats.get("toxic_tokens_per_vector") or [], float)
    nv = int(stats["n_vectors"])
    langs = [lang for lang, c in (stats.get("toxic_languages") or {}).items() if c > 0]
    studied = stats.get("languages_studied")
    need = _many(len(studied)) if studied else MANY_MIN
    m, lo, hi, _ = mean_ci(per) if per.size else (math.nan,) * 4
    run = (f"{_f(m, 2)} distinct lexicon-toxic top tokens per vector (mean of {nv} vectors"
           + (f", 95% CI {_f(lo, 2)}, {_f(hi, 2)}" if _fin(lo) is not None else "")
           + f"); their measured languages: {len(langs)} ({_langs(langs)})")
    p_tok, p_lang = _fin(stats.get("p_tokens")), _fin(stats.get("p_languages"))
    if p_tok is None:
        return Verdict("C2", statement, paper, run, _fin(m), _fin(lo), _fin(hi), nv, INCONCLUSIVE,
                       "no random-vector null in this run, so no test of the toxic-token excess")
    null_m = _fin(stats.get("null_mean_toxic_tokens"))
    test = (f"empirical null: mean distinct toxic tokens per vector vs {stats.get('n_perm')} random sets of "
            f"{nv} of {stats.get('null_vectors')} non-candidate value vectors from the same layers (null mean "
            f"{_f(null_m, 2)}): one-sided p = {p_tok:.3g}; distinct measured languages per vector vs null: p = "
            + (f"{p_lang:.3g}" if p_lang is not None else "–")
            + f"; toxic tokens' measured languages {len(langs)} (need ≥ {need})")
    if p_tok < ALPHA and len(langs) <= 1:
        verdict = FAILS
        test += "; the excess toxic tokens are of at most one measured language"
    elif p_tok < ALPHA and len(langs) >= need:
        verdict = HOLDS
    else:
        verdict = INCONCLUSIVE
    return Verdict("C2", statement, paper, run, _fin(m), _fin(lo), _fin(hi), nv, verdict, test)


# ----------------------------------------------------------------------------- C3: keys
def verdict_c3(key_summary: pd.DataFrame | Sequence[Mapping[str, Any]] | None, model: str = "mGPT",
               *, base: str = "base", tuned: str = "dpo") -> Verdict:
    """C3 from the key-activation summary (model, lang, mean, ci_lo, ci_hi, n_prompts).

    Holds if the base activation's CI lies above 0 in many languages and the DPO CI lies wholly
    below the base CI in every language; does not hold if it fires in at most one language or
    DPO's CI lies wholly above the base's somewhere. (Disjoint 95% CIs are a conservative test.)
    """
    (pb, pa), pm = _paper(model, "keys")
    paper = f"17-language mean activation {pb:+.4f} → {pa:+.4f} ({pm}, Fig. 3)"
    statement = "the toxic keys fire on toxic prompts of many languages, and DPO lowers them everywhere"
    df = pd.DataFrame(key_summary) if key_summary is not None else pd.DataFrame()
    if df.empty or not {base, tuned} <= set(df.get("model", [])):
        return Verdict("C3", statement, paper, "–", None, None, None, 0, INCONCLUSIVE,
                       f"no key activations of both models ({base!r}, {tuned!r}) in this run")
    df = df[df["lang"] != "all"]
    b = df[df["model"] == base].set_index("lang")
    t = df[df["model"] == tuned].set_index("lang").reindex(b.index)
    small = b.index[b["n_prompts"] < MIN_PER_LANGUAGE].tolist() if "n_prompts" in b else []
    fire = b.index[b["ci_lo"] > 0].tolist()
    lowered = b.index[t["ci_hi"] < b["ci_lo"]].tolist()
    raised = b.index[t["ci_lo"] > b["ci_hi"]].tolist()
    diff = float((t["mean"] - b["mean"]).mean())
    # Normal approximation from the per-language bootstrap CIs (base and DPO taken as independent).
    se = np.sqrt((((b["ci_hi"] - b["ci_lo"]) / 3.92) ** 2 + ((t["ci_hi"] - t["ci_lo"]) / 3.92) ** 2).sum()) / len(b)
    n = int(b["n_prompts"].sum()) if "n_prompts" in b else len(b)
    run = (f"mean activation {b['mean'].mean():+.4f} → {t['mean'].mean():+.4f}, change {diff:+.4f} "
           f"[95% CI {diff - 1.96 * se:+.4f}, {diff + 1.96 * se:+.4f}]; n = {n} prompts in {len(b)} languages")
    need = _many(len(b))
    test = (f"base 95% CI above 0 in {len(fire)}/{len(b)} languages ({_langs(fire)}; need ≥ {need}); "
            f"DPO CI wholly below base CI in {len(lowered)}/{len(b)} ({_langs(lowered)})")
    if len(fire) <= 1 or raised:
        verdict = FAILS
        if raised:
            test += f"; wholly above in {_langs(raised)}"
    elif small:
        verdict = INCONCLUSIVE
        test += f"; fewer than {MIN_PER_LANGUAGE} prompts in {_langs(small)}"
    elif len(fire) >= need and len(lowered) == len(b):
        verdict = HOLDS
    else:
        verdict = INCONCLUSIVE
    return Verdict("C3", statement, paper, run, diff, diff - 1.96 * float(se), diff + 1.96 * float(se), n, verdict, test)


# ----------------------------------------------------------------------------- C4: correlation
def reduction_correlation(records: pd.DataFrame | Sequence[Mapping[str, Any]] | None, *,
                          signal: str = "retrieval_acc") -> tuple[dict[str, Any], int] | None:
    """Return (row, sign) for ``signal`` against the EMT *reduction* from a correlation table.

    An outcome named ``*reduction*`` is taken as is (positive when toxicity falls, the paper's sign);
    ``emt_change_pct`` (after - before) gets sign -1, so ``sign * r`` is r against the reduction.
    """
    df = pd.DataFrame(records) if records is not None else pd.DataFrame()
    if df.empty or "signal" not in df or "outcome" not in df:
        return None
    rows = df[df["signal"] == signal]
    outs = rows["outcome"].astype(str)
    for mask, sign in ((outs.str.contains("reduction") & outs.str.startswith("emt"), 1),
                       (outs == "emt_change_pct", -1), (outs == "emt_change", -1),
                       (outs.str.contains("reduction"), 1), (outs.str.endswith("_change_pct"), -1)):
        if mask.any():
            return rows[mask].iloc[0].to_dict(), sign
    return None


def verdict_c4(correlation: pd.DataFrame | Sequence[Mapping[str, Any]] | None, model: str = "mGPT") -> Verdict:
    """C4: holds if r(retrieval, reduction) > 0 with permutation p < 0.05; does not hold if r <= 0 with p < 0.05."""
    if model in PAPER and "r" in PAPER[model] and PAPER[model]["r"] is None:
        paper = f"— (the paper reports no r for {model})"  # never another model's r in its place
    else:
        r_paper, pm = _paper(model, "r")
        paper = f"Pearson r = {r_paper:.3f}, p < 0.01, n = 16 languages ({pm}, Fig. 4)"
    statement = "the per-language toxicity reduction correlates with bilingual retrieval (en, X)"
    found = reduction_correlation(correlation)
    if found is None:
        return Verdict("C4", statement, paper, "–", None, None, None, 0, INCONCLUSIVE,
                       "no correlation of retrieval with the EMT reduction in this run")
    row, sign = found
    n = int(_fin(row.get("n")) or 0)
    r, p = _fin(row.get("pearson_r")), _fin(row.get("perm_p"))
    if r is None or p is None:
        why = str(row.get("skipped") or row.get("warning") or "correlation undefined")
        return Verdict("C4", statement, paper, f"n = {n} languages: {why}", None, None, None, n, INCONCLUSIVE,
                       f"Pearson r not computed ({why})")
    r *= sign
    lo, hi = sorted((sign * _nan(row.get("boot_lo")), sign * _nan(row.get("boot_hi"))))
    run = f"Pearson r = {r:+.3f} [bootstrap 95% CI {_f(lo)}, {_f(hi)}], n = {n} languages"
    test = f"two-sided permutation test of Pearson r (retrieval vs %EMT reduction): p = {p:.3g}"
    if p < ALPHA:
        verdict = HOLDS if r > 0 else FAILS
    else:
        verdict = INCONCLUSIVE
    return Verdict("C4", statement, paper, run, r, _fin(lo), _fin(hi), n, verdict, test)


# ----------------------------------------------------------------------------- P: probe transfer
def auc_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Return the Hanley–McNeil (1982) standard error of a ROC-AUC (NaN without both classes)."""
    if not (n_pos and n_neg) or not math.isfinite(auc):
        return math.nan
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc ** 2) + (n_neg - 1) * (q2 - auc ** 2)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def auc_ci(auc: float, n_pos: int, n_neg: int, alpha: float = ALPHA) -> tuple[float, float]:
    """Return the Hanley–McNeil (1982) normal-approximation CI of a ROC-AUC, clipped to [0, 1]."""
    from scipy.stats import norm

    se = auc_se(auc, n_pos, n_neg)
    if not math.isfinite(se):
        return math.nan, math.nan
    z = norm.ppf(1 - alpha / 2) * se
    return max(0.0, auc - z), min(1.0, auc + z)


def verdict_transfer(transfer: pd.DataFrame | Sequence[Mapping[str, Any]] | None, model: str = "mGPT", *,
                     claim: str = "P", what: str = "the English toxicity probe") -> Verdict:
    """P: holds if every non-English language's AUC CI lies above 0.5; does not hold if one lies below 0.5
    by a Hanley–McNeil z-test that survives Holm correction over the languages."""
    paper, _ = _paper(model, "probe")
    statement = f"{what} transfers to other languages (ROC-AUC > 0.5 against human ratings)"
    df = pd.DataFrame(transfer) if transfer is not None else pd.DataFrame()
    if df.empty or "auc" not in df:
        return Verdict(claim, statement, paper, "–", None, None, None, 0, INCONCLUSIVE, "no probe-transfer table")
    df = df[(df["lang"] != "en") & df["auc"].notna()].copy()
    if df.empty:
        return Verdict(claim, statement, paper, "–", None, None, None, 0, INCONCLUSIVE,
                       "no non-English language has both toxic and clean rated prompts")
    cis = [auc_ci(float(r.auc), int(r.n_toxic), int(r.n_clean)) for r in df.itertuples()]
    df["lo"], df["hi"] = [c[0] for c in cis], [c[1] for c in cis]
    from scipy.stats import norm

    se_l = np.array([auc_se(float(r.auc), int(r.n_toxic), int(r.n_clean)) for r in df.itertuples()])
    with np.errstate(divide="ignore", invalid="ignore"):
        p_below = np.where(df["auc"].to_numpy(float) < 0.5,
                           2 * norm.sf(np.abs(df["auc"].to_numpy(float) - 0.5) / se_l), 1.0)  # family: all
    above = df[df["lo"] > 0.5]["lang"].tolist()
    below = df["lang"][holm(p_below) < ALPHA].tolist()
    mean = float(df["auc"].mean())
    se = math.sqrt(sum(((h - l) / 3.92) ** 2 for l, h in cis)) / len(df)
    n = int(df["n"].sum())
    run = (f"mean ROC-AUC over {len(df)} non-English languages {mean:.3f} [95% CI {mean - 1.96 * se:.3f}, "
           f"{mean + 1.96 * se:.3f}]; n = {n} rated prompts")
    test = (f"Hanley–McNeil 95% CI of each language's AUC: above 0.5 in {len(above)}/{len(df)} ({_langs(above)})"
            + (f"; below 0.5 (z-test, Holm-corrected over {len(df)} languages) in {_langs(below)}" if below else ""))
    verdict = FAILS if below else HOLDS if len(above) == len(df) else INCONCLUSIVE
    return Verdict(claim, statement, paper, run, mean, mean - 1.96 * se, mean + 1.96 * se, n, verdict, test)


# ----------------------------------------------------------------------------- all of them
def claim_verdicts(summary: Mapping[str, Any], *, model_name: str | None = None) -> pd.DataFrame:
    """Return the verdict table (one row per claim) from a run summary's named entries.

    Reads ``toxicity_change_paired`` (C1), ``value_tokens`` (C2), ``key_activations`` (C3),
    ``correlation`` (C4), ``probe_transfer`` (P) and, where an encoder is studied,
    ``encoder_analysis.probe_transfer`` (P-enc). The paper's figures are those of the model named by
    ``model_name`` (or ``summary['model']['name']``), else mGPT's.
    """
    name = model_name or str((summary.get("model") or {}).get("name") or "")
    model = paper_model(name)
    rows = [verdict_c1(summary.get("toxicity_change_paired"), model, scorer=summary.get("scorer")),
            verdict_c2(summary.get("value_tokens"), model),
            verdict_c3(summary.get("key_activations"), model),
            verdict_c4(summary.get("correlation"), model),
            verdict_transfer(summary.get("probe_transfer"), model)]
    encoder = summary.get("encoder_analysis")  # written by interp.app.run_report.encoder_report_sections
    if isinstance(encoder, Mapping) and encoder.get("probe_transfer"):
        rows.append(verdict_transfer(encoder["probe_transfer"], model, claim="P-enc",
                                     what=f"the English probe on the encoder {encoder.get('name', '')}".rstrip()))
    out = pd.DataFrame([asdict(r) for r in rows])
    out.attrs["paper_model"] = model
    return out


__all__ = ["Verdict", "claim_verdicts", "paired_emt_change", "value_token_stats", "verdict_c1", "verdict_c2",
           "verdict_c3", "verdict_c4", "verdict_transfer", "reduction_correlation", "auc_ci", "auc_se", "paper_model",
           "PAPER", "VERDICTS", "HOLDS", "FAILS", "INCONCLUSIVE"]
