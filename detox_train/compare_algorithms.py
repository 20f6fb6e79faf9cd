"""Which preference algorithm transfers across languages (going beyond the paper).

:func:`compare_algorithms` trains every named algorithm (``detox_train.preference``) on the same
English pairs with the same base config and seed, samples continuations of the same prompts from
the base model once and from each tuned model, scores them with one scorer, and returns per
language and algorithm:

* ToxProb and EMT reduction (before - after; positive = less toxic), a paired percentile
  bootstrap CI over prompts (:func:`interp.crosslingual.stats.paired_bootstrap_ci`);
* distinct-2 after tuning and its change, with the same CI;
* ``sft_weight``: the SFT-anchor weight the run applied (a DPOTrainer loss term only: 0 for
  KTO/ORPO/CPO/SimPO whatever the config says; ``xdetox experiment algorithms`` sets it to 0);
* the held-out LM loss change on neutral English text (after - before, nats/token, token
  weighted), with a bootstrap CI over texts (one value per algorithm, repeated on its rows).

``lang == "all"`` pools the prompts of every language. Each algorithm's training run lives in a
folder keyed by the hash of its full config, so a changed config never reuses another's model.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from detox_train.config import DPOTrainConfig

TABLE_COLUMNS = [
    "algorithm", "sft_weight", "lang", "n_prompts", "toxprob_before", "toxprob_after", "toxprob_reduction", "toxprob_reduction_lo",
    "toxprob_reduction_hi", "emt_before", "emt_after", "emt_reduction", "emt_reduction_lo", "emt_reduction_hi",
    "distinct_2_after", "distinct_2_change", "distinct_2_change_lo", "distinct_2_change_hi",
    "heldout_lm_loss_change", "heldout_lm_loss_change_lo", "heldout_lm_loss_change_hi"]


@dataclass
class AlgorithmComparison:
    """Result of :func:`compare_algorithms`."""

    table: Any                 # TABLE_COLUMNS
    timings: Any               # algorithm, train_s, eval_s (wall), train_cpu_s, eval_cpu_s, global_step, n_prompts, n_languages
    meta: dict[str, Any] = field(default_factory=dict)

    def figure(self) -> Any:
        """Return one plotly figure: EMT and ToxProb reduction per language and algorithm, with CIs."""
        from plotly.subplots import make_subplots

        fig = make_subplots(rows=2, cols=1, shared_xaxes=True, subplot_titles=(
            "EMT reduction (before − after)", "ToxProb reduction (before − after)"))
        for i, metric in enumerate(("emt", "toxprob"), start=1):
            for algo, df in self.table.groupby("algorithm", sort=False):
                y = df[f"{metric}_reduction"]
                fig.add_bar(name=str(algo), legendgroup=str(algo), showlegend=i == 1, x=df["lang"], y=y, row=i, col=1,
                            error_y=dict(type="data", symmetric=False,
                                         array=(df[f"{metric}_reduction_hi"] - y).fillna(0),
                                         arrayminus=(y - df[f"{metric}_reduction_lo"]).fillna(0)))
        fig.update_layout(barmode="group", title="Toxicity reduction by preference algorithm (English pairs only)")
        return fig

    def save(self, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
        """Write table (CSV + JSON with manifest), timings and the figure (HTML); return the paths."""
        from detox_train.evaluate import write_table
        from interp.viz.figures import save_figure

        out = Path(out_dir)
        csv, js = write_table(self.table, out / "algorithms", config=self.meta, seed=self.meta.get("seed"))
        tcsv, _ = write_table(self.timings, out / "algorithm_timings", config=self.meta, seed=self.meta.get("seed"))
        (fig,) = save_figure(self.figure(), out / "algorithms_figure")
        return {"table": csv, "table_json": js, "timings": tcsv, "figure": fig}


def _per_prompt(scored: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Return {prompt_id: {lang, max, any_toxic, distinct_2}} over the prompt's valid samples."""
    from detox_train.evaluate.metrics import TOXIC_THRESHOLD, distinct_n

    groups: dict[str, list[Any]] = {}
    for s in scored:
        groups.setdefault(s.prompt_id, []).append(s)
    out = {}
    for pid, ss in groups.items():
        vals = [float(s.score) for s in ss if not s.failed and s.score is not None]
        mx = max(vals) if vals else float("nan")
        out[pid] = {"lang": ss[0].lang, "max": mx, "any": float(mx >= TOXIC_THRESHOLD) if vals else float("nan"),
                    "d2": distinct_n([s.text for s in ss], 2, ss[0].lang)}
    return out


def _reduction(before: np.ndarray, after: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float]:
    from interp.crosslingual.stats import paired_bootstrap_ci

    ok = np.isfinite(before) & np.isfinite(after)
    return paired_bootstrap_ci({"b": before[ok], "a": after[ok]}, lambda c: c["b"].mean(-1) - c["a"].mean(-1),
                               n_boot=n_boot, seed=seed)


def language_rows(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]], n_boot: int,
                  seed: int) -> tuple[list[str], list[dict[str, Any]]]:
    """Return (prompt ids used, one row per language and ``"all"``) from :func:`_per_prompt` outputs.

    A prompt counts only where it has a valid score both before and after, so ``n_prompts``, the
    before/after means and the paired reductions all cover the same prompts
    (``*_before - *_after == *_reduction``).
    """
    ids = [p for p in before if p in after and np.isfinite(before[p]["max"]) and np.isfinite(after[p]["max"])]
    langs = sorted({before[p]["lang"] for p in ids})
    rows = []
    for lang in [*langs, "all"]:
        sel = [p for p in ids if lang == "all" or before[p]["lang"] == lang]
        col = lambda d, key: np.array([d[p][key] for p in sel], dtype=float)  # noqa: E731
        tp = _reduction(col(before, "any"), col(after, "any"), n_boot, seed)
        em = _reduction(col(before, "max"), col(after, "max"), n_boot, seed)
        d2 = _reduction(col(after, "d2"), col(before, "d2"), n_boot, seed)  # after - before
        rows.append({
            "lang": lang, "n_prompts": len(sel),
            "toxprob_before": float(np.mean(col(before, "any"))), "toxprob_after": float(np.mean(col(after, "any"))),
            "toxprob_reduction": tp[0], "toxprob_reduction_lo": tp[1], "toxprob_reduction_hi": tp[2],
            "emt_before": float(np.mean(col(before, "max"))), "emt_after": float(np.mean(col(after, "max"))),
            "emt_reduction": em[0], "emt_reduction_lo": em[1], "emt_reduction_hi": em[2],
            "distinct_2_after": float(np.nanmean(col(after, "d2"))), "distinct_2_change": d2[0],
            "distinct_2_change_lo": d2[1], "distinct_2_change_hi": d2[2]})
    return ids, rows


def per_text_losses(model: Any, tokenizer: Any, texts: Sequence[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (mean NLL per text, scored tokens per text) by :func:`interp.model.lm_loss.text_nll` (the
    rule of :func:`detox_train.dpo.lm_loss`; a text with no scored token has loss 0)."""
    from interp.model.lm_loss import text_nll

    scored = text_nll(model, tokenizer, texts, max_length=max_length)
    counts = np.array([n for _, n in scored], dtype=float)
    losses = np.array([nll for nll, _ in scored], dtype=float) / np.maximum(counts, 1)
    return losses, counts


def compare_algorithms(
    algorithms: Sequence[str], base_config: DPOTrainConfig, prompts: Sequence[Any], scorer: Any,
    out_dir: str | os.PathLike[str], *, k: int = 5, max_new_tokens: int = 20, temperature: float = 0.9,
    top_p: float = 0.8, batch_size: int = 8, seed: int = 0, n_boot: int = 1000, progress: bool = True,
) -> AlgorithmComparison:
    """Return the comparison table of ``algorithms`` trained per ``base_config`` and evaluated on ``prompts``.

    ``prompts`` are :class:`interp.data.records.Prompt` records (every language); ``scorer`` is a
    ``detox_train.evaluate`` scorer. Everything is written under ``out_dir``; reruns resume.
    """
    import pandas as pd

    from detox_train.dpo import build_pairs, heldout_neutral_texts, last_checkpoint, prepare_pairs, train_dpo
    from detox_train.evaluate import generate, score
    from detox_train.preference import get_algorithm, preference_manifest
    from interp.core.artifacts import read_json, stable_hash, write_json
    from interp.model.loading import load_hf_model, load_model

    algos = [get_algorithm(a).name for a in algorithms]
    if not algos:
        raise ValueError("no algorithm to compare; name at least one (see detox_train.preference.ALGORITHMS)")
    if len(set(algos)) != len(algos):
        raise ValueError(f"algorithms repeat: {algos}")
    out = Path(out_dir)
    gen = dict(k=k, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
               batch_size=batch_size, progress=progress)

    def evaluate(model_path: str, tag: Path) -> tuple[list[Any], float, float]:
        """Return (scored samples, wall s, CPU s); a rerun that reads cached samples reports the first timing,
        and NaN when none was recorded (samples from an interrupted or older run)."""
        fresh = not (tag / "samples.jsonl").is_file()
        t0, c0 = time.perf_counter(), time.process_time()
        model = load_model(model_path, dtype="float32", device=base_config.device)
        samples = generate(model, list(prompts), out_path=tag / "samples.jsonl", **gen)
        scored = score(samples, scorer, out_path=tag / "scored.jsonl", progress=progress)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        timing_file = tag / "eval_timing.json"
        if fresh:
            write_json(timing_file, {"eval_s": wall, "eval_cpu_s": cpu})
        elif timing_file.is_file():
            rec = read_json(timing_file)
            wall, cpu = float(rec["eval_s"]), float(rec["eval_cpu_s"])
        else:
            wall = cpu = float("nan")
        return scored, wall, cpu

    base_scored, base_eval_s, _ = evaluate(base_config.model, out / "base")
    before = _per_prompt(base_scored)
    # The held-out neutral texts of the shared split (identical for every algorithm: same pairs, same seed).
    hf, tok = load_hf_model(base_config.model, dtype="float32", device="cpu")
    pairs, _ = build_pairs(base_config, model=hf, tokenizer=tok)
    _, eval_pairs, _ = prepare_pairs(pairs, tok, base_config)
    held = heldout_neutral_texts(base_config, eval_pairs)
    held_before, held_w = per_text_losses(hf, tok, held, base_config.max_length)
    del hf

    rows, timings, manifests = [], [], {}
    for name in algos:
        cfg = base_config.replace(algorithm=name)
        key = stable_hash(cfg.replace(output_dir="").to_dict())[:12]
        run = out / f"{name}-{key}"
        resumed = last_checkpoint(run / "train") is not None  # train_dpo resumes from it (often the last step)
        t0, c0 = time.perf_counter(), time.process_time()
        model_dir = train_dpo(cfg.replace(output_dir=str(run / "train")), pairs=pairs, resume=True)
        train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
        # A resumed run's wall time is not its training time: keep the one recorded when it trained afresh.
        timing_file = run / "train_timing.json"
        if not resumed:
            write_json(timing_file, {"train_s": train_s, "train_cpu_s": train_cpu})
        elif timing_file.is_file():
            rec = read_json(timing_file)
            train_s, train_cpu, resumed = float(rec["train_s"]), float(rec["train_cpu_s"]), False
        scored, eval_s, eval_cpu = evaluate(str(model_dir), run)
        after = _per_prompt(scored)
        tuned_hf, tuned_tok = load_hf_model(str(model_dir), dtype="float32", device="cpu")
        held_after, _ = per_text_losses(tuned_hf, tuned_tok, held, base_config.max_length)
        del tuned_hf
        from interp.crosslingual.stats import paired_bootstrap_ci

        lm = paired_bootstrap_ci({"b": held_before, "a": held_after, "w": held_w},
                                 lambda c: (c["w"] * (c["a"] - c["b"])).sum(-1) / c["w"].sum(-1), n_boot=n_boot, seed=seed)
        ids, lang_rows = language_rows(before, after, n_boot, seed)
        langs = sorted({before[p]["lang"] for p in ids})
        for r in lang_rows:
            rows.append({"algorithm": name, "sft_weight": cfg.sft_weight if get_algorithm(name).trainer == "dpo" else 0.0,
                         **r, "heldout_lm_loss_change": lm[0], "heldout_lm_loss_change_lo": lm[1],
                         "heldout_lm_loss_change_hi": lm[2]})
        man = read_json(Path(model_dir) / "manifest.json")
        manifests[name] = {"run": str(run), "key": key, "preference": man.get("preference", preference_manifest(cfg))}
        timings.append({"algorithm": name, "train_s": train_s, "eval_s": eval_s, "train_cpu_s": train_cpu,
                        "eval_cpu_s": eval_cpu, "train_time_unknown": resumed,
                        "eval_time_unknown": bool(np.isnan(eval_s)), "global_step": man.get("global_step"),
                        "n_prompts": len(ids), "n_languages": len(langs)})
    meta = {"algorithms": algos, "base_config": base_config.to_dict(), "generation": {**gen, "progress": None},
            "scorer": {"id": getattr(scorer, "id", "?"), "version": getattr(scorer, "version", "?")},
            "n_boot": n_boot, "seed": seed, "base_eval_s": base_eval_s, "n_heldout_texts": len(held),
            "runs": manifests, "all_row": "prompts pooled over languages",
            "reduction": "before - after (positive = less toxic); distinct-2 and LM loss changes are after - before"}
    res = AlgorithmComparison(pd.DataFrame(rows, columns=TABLE_COLUMNS), pd.DataFrame(timings), meta)
    res.save(out)
    return res


def estimate_seconds(timings: Any, *, n_languages: int, n_prompts: int, k: int, measured_k: int,
                     column: str = "") -> float:
    """Return a linear wall-time estimate for ``timings``' algorithms at another evaluation size.

    Training is taken as measured per algorithm (it does not depend on the evaluation prompts);
    evaluation scales with the number of samples (languages x prompts x k), plus one base-model
    evaluation. ``column="_cpu"`` uses process CPU seconds (a single-threaded run on an idle core)
    instead of wall seconds (this machine's load included). Rows marked ``train_time_unknown`` (resumed
    without a recorded training time) or ``eval_time_unknown`` (cached samples without a recorded
    evaluation time) are left out; the result is NaN when every row is.
    """
    t = timings
    for unknown in ("train_time_unknown", "eval_time_unknown"):
        if unknown in t:
            t = t[~t[unknown].astype(bool)]
    if len(t) == 0:
        return float("nan")
    per_sample = (t[f"eval{column}_s"] / (t["n_prompts"] * measured_k)).mean()
    samples = n_languages * n_prompts * k
    return float(t[f"train{column}_s"].sum() + per_sample * samples * (len(t) + 1))


__all__ = ["compare_algorithms", "AlgorithmComparison", "TABLE_COLUMNS", "per_text_losses", "language_rows", "estimate_seconds"]
