"""Stage 4: generation, scoring and per-language metrics before and after preference tuning."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp.core.artifacts import read_json, write_csv, write_json

if TYPE_CHECKING:
    from interp.app.pipeline import Pipeline


def stage_generate(pipe: "Pipeline", d: Path) -> tuple[str, dict[str, Any]]:
    from detox_train.evaluate import generate

    ev = pipe.config.evaluation
    prompts = [p for ps in pipe.eval_prompts(ev.n_prompts, ev.prompt_split).values() for p in ps]
    counts = {}
    for tag, model in (("before", pipe.base_model()), ("after", pipe.tuned_model())):
        samples = generate(model, prompts, k=ev.k, max_new_tokens=ev.max_new_tokens, temperature=ev.temperature,
                           top_p=ev.top_p, seed=pipe.config.seed, out_path=d / f"samples_{tag}.jsonl",
                           batch_size=ev.batch_size, progress=pipe.progress)
        counts[tag] = len(samples)
    man = read_json(d / "samples_before.jsonl.manifest.json")
    cut = int(man.get("n_prompts_truncated", 0))  # prompts over the context keep their end
    return (f"{counts['before']} + {counts['after']} samples for {len(prompts)} prompts "
            f"in {len(pipe.config.languages)} languages; {cut} prompts cut from the left to fit the context",
            {"before": pipe.rel(d / "samples_before.jsonl"), "after": pipe.rel(d / "samples_after.jsonl")})


def stage_score(pipe: "Pipeline", d: Path) -> tuple[str, dict[str, Any]]:
    from detox_train.evaluate import score_samples

    scorer = pipe.scorer()
    failed = 0
    for tag in ("before", "after"):
        scored = score_samples(pipe.output("generate", tag), scorer, d / f"scored_{tag}.jsonl",
                               progress=pipe.progress)
        failed += sum(1 for s in scored if getattr(s, "failed", False))
    write_json(d / "scorer.json", {"id": scorer.id, "version": scorer.version})
    return (f"scored with {scorer.id} {scorer.version}; {failed} failed items",
            {"before": pipe.rel(d / "scored_before.jsonl"), "after": pipe.rel(d / "scored_after.jsonl"),
             "scorer": pipe.rel(d / "scorer.json")})


def stage_metrics(pipe: "Pipeline", d: Path) -> tuple[str, dict[str, Any]]:
    from detox_train.evaluate import Judge, compare_tables, language_metrics, read_scored

    ev = pipe.config.evaluation
    judge = None
    prompts = [p for ps in pipe.eval_prompts(ev.n_prompts, ev.prompt_split).values() for p in ps]
    judge_info: dict[str, Any] = {"judge": ev.judge if ev.perplexity else None}
    if ev.perplexity:  # conditional PPL of each continuation given its prompt, under the judge LM
        judge_model = pipe.judge_model()
        judge = Judge.from_prompts(judge_model, prompts)
        judge_info["fingerprint"] = pipe.judge_fingerprint(judge_model)
    write_json(d / "judge.json", judge_info)
    expected = sorted((p.id, j) for p in prompts for j in range(ev.k))
    tables = {}
    for tag in ("before", "after"):
        scored = read_scored(pipe.output("score", tag))
        got = sorted((s.prompt_id, s.sample_index) for s in scored)
        if got != expected:  # the metrics must describe exactly the requested prompt set
            raise ValueError(f"stage metrics: {pipe.output('score', tag)} holds {len(got)} samples, not the "
                               f"{len(expected)} of the {len(prompts)} requested prompts; rerun with "
                               "--from generate")
        tables[tag] = language_metrics(scored, judge=judge, n_boot=ev.n_boot, seed=pipe.config.seed)
        write_csv(d / f"metrics_{tag}.csv", tables[tag])
    cmp = compare_tables(tables["before"], tables["after"])
    write_csv(d / "metrics_compare.csv", cmp)
    write_json(d / "metrics_compare.json", cmp.to_dict(orient="records"))
    b, a = tables["before"], tables["after"]
    return (f"mean EMT {b['emt'].mean():.3f} -> {a['emt'].mean():.3f}, ToxProb {b['toxprob'].mean():.3f} -> "
            f"{a['toxprob'].mean():.3f} over {len(b)} languages",
            {"before": pipe.rel(d / "metrics_before.csv"), "after": pipe.rel(d / "metrics_after.csv"),
             "compare": pipe.rel(d / "metrics_compare.csv"), "judge": pipe.rel(d / "judge.json")})
