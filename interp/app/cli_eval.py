"""``xdetox eval generate | score | metrics``: a thin shell over :mod:`detox_train.evaluate`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from interp.app.cli_common import add_command, add_languages_arg, check_flag, check_out_dir, check_out_file


def eval_prompts(data_root: str | None, languages: list[str] | None, n_prompts: int | None,
                 split: str = "eval") -> list[Any]:
    """Return the first ``n_prompts`` RTP-LX prompts of ``split`` per language (by Index)."""
    from interp.data.rtplx import load_rtplx
    from interp.data.split import rtplx_split
    from interp.data.languages import normalize_languages

    langs = normalize_languages(languages, where="--languages")
    prompts = sorted(rtplx_split(load_rtplx(data_root, langs), split, root=data_root),
                     key=lambda p: (langs.index(p.lang), p.index if p.index is not None else -1))
    if n_prompts is not None:
        count: dict[str, int] = {}
        keep = []
        for p in prompts:
            count[p.lang] = count.get(p.lang, 0) + 1
            if count[p.lang] <= n_prompts:
                keep.append(p)
        prompts = keep
    return prompts


def _generate(args: argparse.Namespace) -> int:
    from interp.app.cli_common import load_model_from_args

    from detox_train.evaluate import GenerationSettings, generate

    for flag, value in (("--n-prompts", args.n_prompts), ("--k", args.k), ("--max-new-tokens", args.max_new_tokens),
                        ("--batch-size", args.batch_size)):
        check_flag(flag, value, ge=1)
    check_flag("--temperature", args.temperature, gt=0)
    check_flag("--top-p", args.top_p, gt=0, le=1)
    check_out_file(args.out)
    if args.backend == "vllm":
        try:
            import vllm  # noqa: F401
        except ImportError:
            raise ImportError("--backend vllm needs vLLM, which is not installed: pip install 'xdetox[vllm]' "
                              "(on a CUDA machine), or use --backend hf") from None
    prompts = eval_prompts(args.data_root, args.languages, args.n_prompts, args.split)
    model = load_model_from_args(args)
    settings = GenerationSettings(k=args.k, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                                  top_p=args.top_p, seed=args.seed, backend=args.backend)
    samples = generate(model, prompts, settings, out_path=Path(args.out), batch_size=args.batch_size)
    print(f"{len(samples)} samples for {len(prompts)} prompts -> {args.out}")
    return 0


def _scorer_from_args(args: argparse.Namespace) -> Any:
    from detox_train.evaluate import get_scorer

    if args.scorer == "perspective":
        check_flag("--qps", args.qps, gt=0)
        check_flag("--concurrency", args.concurrency, ge=1)
        check_flag("--max-retries", args.max_retries, ge=0)
        check_flag("--time-limit", args.time_limit, gt=0)
        return get_scorer("perspective", qps=args.qps, attributes=args.attributes.split(","),
                          concurrency=args.concurrency, max_retries=args.max_retries, max_total_s=args.time_limit,
                          **({"base_url": args.perspective_url} if args.perspective_url else {}))
    if args.scorer == "hf":
        if not args.hf_model:
            raise ValueError("--scorer hf needs --hf-model DIR (a local sequence-classification checkpoint)")
        if not Path(args.hf_model).is_dir():
            raise FileNotFoundError(f"--hf-model {args.hf_model}: no such model directory")
        return get_scorer("hf", path=args.hf_model, toxic_label=args.toxic_label, activation=args.activation)
    if args.scorer == "e5" and args.e5_head and not Path(args.e5_head).is_dir():
        raise FileNotFoundError(f"--e5-head {args.e5_head}: no such head folder (omit it to build/reuse the cached one)")
    if args.scorer == "e5":
        from detox_train.evaluate.scorers.e5 import build_e5_head

        return get_scorer("e5", head_dir=args.e5_head or build_e5_head(root=args.data_root))
    from interp.data.lexicon import Lexicon

    return get_scorer("lexicon", lexicon=Lexicon.from_root(args.data_root))


def _score(args: argparse.Namespace) -> int:
    from interp.core.paths import cache_dir

    from detox_train.evaluate import score_samples

    from detox_train.evaluate.generation import read_samples

    check_flag("--batch-size", args.batch_size, ge=1)
    check_out_file(args.out)
    check_out_file(args.cache, "--cache")
    read_samples(args.samples)  # validate the input before a scorer is built (the e5 head may take minutes)
    scorer = _scorer_from_args(args)
    cache = None if args.no_cache else (args.cache or cache_dir("scores") / "scores.sqlite")
    scored = score_samples(args.samples, scorer, args.out, cache=cache, batch_size=args.batch_size)
    n_failed = sum(s.failed for s in scored)
    if scored and n_failed == len(scored):
        first = next(s.error for s in scored if s.failed)
        print(f"xdetox: error: all {n_failed} texts failed to score (first: {first}); the scores in {args.out} are "
              "marked failed and will be retried on a rerun", file=sys.stderr)
        return 1
    print(f"{len(scored)} scored ({n_failed} failed) by {scored[0].scorer if scored else args.scorer} -> {args.out}")
    return 0


def _metrics(args: argparse.Namespace) -> int:
    from detox_train.evaluate import Judge, compare_tables, language_metrics, read_scored, write_table

    check_flag("--n-boot", args.n_boot, ge=1)
    check_out_dir(args.out)
    after_rows = read_scored(args.scored)
    before_rows = read_scored(args.before) if args.before else None
    if before_rows is not None:
        _check_comparable(before_rows, after_rows, args.before, args.scored)
    judge = None
    if args.judge:
        from interp.data.rtplx import load_rtplx
        from interp.model.loading import load_model

        model = load_model(args.judge, dtype=args.dtype, device=args.device)
        judge = Judge.from_prompts(model, load_rtplx(args.data_root))
    out = Path(args.out)
    after = language_metrics(after_rows, judge=judge, n_boot=args.n_boot, seed=args.seed)
    write_table(after, out / "metrics", inputs={"scored": args.scored}, seed=args.seed)
    if args.before:
        before = language_metrics(before_rows, judge=judge, n_boot=args.n_boot, seed=args.seed)
        write_table(before, out / "metrics_before", inputs={"scored": args.before}, seed=args.seed)
        write_table(compare_tables(before, after), out / "comparison",
                    inputs={"before": args.before, "after": args.scored})
    print(after.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    print(f"tables -> {out}")
    return 0


def _check_comparable(before: list[Any], after: list[Any], before_path: str, after_path: str) -> None:
    """Refuse a before/after table from different scorers or prompt sets (the comparison would be void)."""
    from interp.core.artifacts import InputError

    sb, sa = sorted({r.scorer for r in before}), sorted({r.scorer for r in after})
    if sb != sa:
        raise InputError(f"--before {before_path} was scored by {', '.join(sb)} but --scored {after_path} by "
                         f"{', '.join(sa)}; score both with the same scorer (xdetox eval score --scorer ...)")
    pb, pa = {r.prompt_id for r in before}, {r.prompt_id for r in after}
    if pb != pa:
        only_b, only_a = sorted(pb - pa), sorted(pa - pb)
        raise InputError(f"--before {before_path} and --scored {after_path} cover different prompt sets "
                         f"({len(only_b)} prompt ids only in before, e.g. {only_b[:2]}; {len(only_a)} only in after, "
                         f"e.g. {only_a[:2]}); generate both from the same prompts")
    kb, ka = (sorted(set(_k_per_prompt(rows).values())) for rows in (before, after))
    if kb != ka:
        raise InputError(f"--before {before_path} has {'/'.join(map(str, kb))} samples per prompt but --scored "
                         f"{after_path} has {'/'.join(map(str, ka))}; generate both with the same "
                         "--samples-per-prompt (k) or the rates would not be comparable")


def _k_per_prompt(rows: list[Any]) -> dict[str, int]:
    """Samples per prompt id (distinct sample indices)."""
    seen: dict[str, set[int]] = {}
    for r in rows:
        seen.setdefault(r.prompt_id, set()).add(r.sample_index)
    return {p: len(v) for p, v in seen.items()}


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``eval`` group: ``generate``, ``score``, ``metrics``."""
    p = sub.add_parser("eval", help="multilingual evaluation: sample, score toxicity, compute metrics")
    g = p.add_subparsers(dest="eval_command", required=True, metavar="STEP")

    gen = add_command(g, "generate", "sample K continuations per RTP-LX evaluation prompt (resumable JSONL)",
                      model=True, data=True)
    add_languages_arg(gen)
    gen.add_argument("--n-prompts", type=int, default=None, help="prompts per language (default: all)")
    gen.add_argument("--split", default="eval", choices=["eval", "train"], help="RTP-LX split (default eval)")
    gen.add_argument("--k", type=int, default=25, help="continuations per prompt")
    gen.add_argument("--max-new-tokens", type=int, default=20)
    gen.add_argument("--temperature", type=float, default=0.9)
    gen.add_argument("--top-p", type=float, default=0.8)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--batch-size", type=int, default=8, help="prompts per generate call")
    gen.add_argument("--backend", default="hf", choices=["hf", "vllm"])
    gen.add_argument("--out", required=True, help="samples JSONL (resumed if it exists)")
    gen.set_defaults(func=_generate)

    sc = add_command(g, "score", "score a samples JSONL with a toxicity scorer (resumable, cached)", data=True)
    sc.add_argument("--samples", required=True, help="samples JSONL from `xdetox eval generate`")
    sc.add_argument("--scorer", default="e5", choices=["e5", "lexicon", "perspective", "hf"])
    sc.add_argument("--out", required=True, help="scored JSONL (resumed if it exists)")
    sc.add_argument("--cache", default=None, help="SQLite score cache (default: <xdetox cache>/scores/scores.sqlite)")
    sc.add_argument("--no-cache", action="store_true", help="do not use a score cache")
    sc.add_argument("--batch-size", type=int, default=64)
    sc.add_argument("--qps", type=float, default=1.0, help="perspective: requests per second")
    sc.add_argument("--concurrency", type=int, default=1,
                    help="perspective: requests in flight (the --qps bucket still caps the rate)")
    sc.add_argument("--attributes", default="TOXICITY", help="perspective: comma-separated attributes")
    sc.add_argument("--perspective-url", default=None, help="perspective: analyze endpoint (for proxies/tests)")
    sc.add_argument("--max-retries", type=int, default=6, help="perspective: retries per text after a failure")
    sc.add_argument("--time-limit", type=float, default=None,
                    help="perspective: total seconds for the whole scoring run; later texts are marked failed")
    sc.add_argument("--hf-model", default=None, help="hf: local sequence-classification model directory")
    sc.add_argument("--toxic-label", default=None, help="hf: index or name of the toxic label")
    sc.add_argument("--activation", default="softmax", choices=["softmax", "sigmoid"])
    sc.add_argument("--e5-head", default=None, help="e5: head folder (default: build/reuse the cached one)")
    sc.set_defaults(func=_score)

    me = add_command(g, "metrics", "per-language EMT/ToxProb/AvgTox (+CIs), PPL, distinct-n; before/after", data=True)
    me.add_argument("--scored", required=True, help="scored JSONL (after)")
    me.add_argument("--before", default=None, help="scored JSONL of the base model, for a before/after table")
    me.add_argument("--out", required=True, help="output folder for CSV/JSON tables")
    me.add_argument("--judge", default=None, help="judge causal LM for conditional perplexity (default: skip PPL)")
    me.add_argument("--dtype", default="auto")
    me.add_argument("--device", default=None)
    me.add_argument("--n-boot", type=int, default=1000)
    me.add_argument("--seed", type=int, default=0)
    me.set_defaults(func=_metrics)
