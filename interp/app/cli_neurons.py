"""``xdetox neurons find | project | activations | intervene``: a thin shell over the neuron library.

Prompt texts from RTP-LX are never printed or written; only ids, counts and aggregates are.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

from interp.app.cli_common import add_command, add_languages_arg, check_flag, check_out_dir, check_out_file, load_model_from_args


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``neurons`` command group."""
    p = sub.add_parser("neurons", help="toxic MLP neurons: find, project to vocabulary, key activations, intervene")
    ns = p.add_subparsers(dest="neurons_command", required=True, metavar="ACTION")

    f = add_command(ns, "find", "rank value vectors by cosine to the probe; optional activation filter",
                    model=True, data=True)
    f.add_argument("--probe", required=True, help="probe directory or .safetensors (tensor 'direction' or 'weight')")
    f.add_argument("--top-k", type=int, default=100, help="number of candidates (paper: 100)")
    f.add_argument("--filter-rtplx", type=int, default=0, metavar="N",
                   help="activation filter on N toxic English RTP-LX prompts (train split; 0 = no filter)")
    f.add_argument("--filter-file", default=None, help="activation filter on prompts from a text file (one per line)")
    f.add_argument("--n-new-tokens", type=int, default=20, help="greedy steps of the activation filter (paper: 20)")
    f.add_argument("--keep", choices=("positive_mean", "all"), default="positive_mean", help="filter rule")
    f.add_argument("--positions", choices=("generation", "prompt"), default="generation",
                   help="filter over greedy steps (paper) or over the prompt's own tokens (encoders: e5, XLM-R)")
    f.add_argument("--batch-size", type=int, default=16)
    f.add_argument("--seed", type=int, default=0, help="seed for sampling filter prompts")
    f.add_argument("--out", required=True, help="output JSON table")
    f.set_defaults(func=cmd_find)

    pr = add_command(ns, "project", "top-k tokens of W_U v per value vector, with language tags",
                     model=True, data=True)
    pr.add_argument("--neurons", required=True, help="JSON table from `xdetox neurons find`")
    pr.add_argument("--all", action="store_true", help="use every candidate, not only the kept ones")
    pr.add_argument("--k", type=int, default=30, help="tokens per vector (paper: 5 main text, 30 appendix)")
    pr.add_argument("--out-dir", required=True, help="writes vocab_table.csv, value_language_mass.csv, tokens.html")
    add_languages_arg(pr, what="languages token languages are measured over")
    pr.add_argument("--gettext", action="store_true",
                    help="also measure token languages on each language's own system gettext strings")
    pr.set_defaults(func=cmd_project)

    a = add_command(ns, "activations", "key activations per language (paper Fig. 3); base vs --adapter",
                    model=True, data=True)
    a.add_argument("--neurons", required=True, help="JSON table from `xdetox neurons find` (kept rows)")
    add_languages_arg(a, what="RTP-LX languages")
    a.add_argument("--max-prompts", type=int, default=50, help="RTP-LX eval-split prompts per language (seeded)")
    a.add_argument("--n-new-tokens", type=int, default=20)
    a.add_argument("--positions", choices=("generation", "prompt"), default="generation",
                   help="average over greedy steps (paper) or over the prompt's own tokens (encoders)")
    a.add_argument("--batch-size", type=int, default=16)
    a.add_argument("--n-boot", type=int, default=1000)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--out-dir", required=True, help="writes key_activations*.csv, key_ratio.csv, figure HTML")
    a.set_defaults(func=cmd_activations)

    i = add_command(ns, "intervene", "greedy continuations with neuron activations edited (paper Table 5)",
                    model=True)
    i.add_argument("--neurons", default=None, help="JSON table from `xdetox neurons find` (kept rows)")
    i.add_argument("--neuron", action="append", default=[], metavar="L:I", help="a neuron (repeatable)")
    i.add_argument("--mode", choices=("add", "scale", "set"), default="add")
    i.add_argument("--value", type=float, default=5.0, help="paper Table 5: +5")
    i.add_argument("--positions", choices=("all", "generated"), default="all")
    i.add_argument("--prompt", action="append", required=True, help="prompt text (repeatable)")
    i.add_argument("--max-new-tokens", type=int, default=10)
    i.set_defaults(func=cmd_intervene)


def load_probe_direction(path: str | Path) -> Any:
    """Return the direction tensor in a probe directory or safetensors file (``direction``/``weight``)."""
    from interp.core.artifacts import load_tensors

    path = Path(path)
    file = path / "probe.safetensors" if path.is_dir() else path
    if path.is_dir() and not file.is_file():
        found = sorted(path.glob("*.safetensors"))
        if len(found) != 1:
            raise FileNotFoundError(f"{path}: expected probe.safetensors (from `xdetox probe train`), "
                                    f"found {[p.name for p in found]}")
        file = found[0]
    tensors, _ = load_tensors(file)
    for key in ("direction", "weight"):
        if key in tensors:
            return tensors[key].float().reshape(-1) if tensors[key].dim() == 2 and 1 in tensors[key].shape \
                else tensors[key].float()
    raise ValueError(f"{file}: no tensor named 'direction' or 'weight' (has {sorted(tensors)}); "
                     "pass a probe written by `xdetox probe train`")


def _lines(path: str) -> list[str]:
    from interp.core.artifacts import read_text

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such prompt file (one prompt per line)")
    return [line for line in read_text(p, what="prompt file").splitlines() if line.strip()]


def cmd_find(args: argparse.Namespace) -> int:
    from interp.neurons.ranking import find_toxic_neurons

    check_flag("--top-k", args.top_k, ge=1)
    check_flag("--filter-rtplx", args.filter_rtplx, ge=0)
    check_flag("--n-new-tokens", args.n_new_tokens, ge=1)
    check_flag("--batch-size", args.batch_size, ge=1)
    check_out_file(args.out)
    direction = load_probe_direction(args.probe)
    prompts: list[str] | None = None
    if args.filter_file:
        prompts = _lines(args.filter_file)
        if not prompts:
            raise ValueError(f"--filter-file {args.filter_file}: the file is empty (no non-blank lines); "
                             "give one prompt per line")
    elif args.filter_rtplx:
        from interp.data.rtplx import load_rtplx
        from interp.data.split import rtplx_split

        pool = [p for p in rtplx_split(load_rtplx(args.data_root, ["en"]), "train", root=args.data_root)
                if (p.toxicity or 0) >= 3.0]
        pool = random.Random(args.seed).sample(pool, min(args.filter_rtplx, len(pool)))
        prompts = [p.text for p in pool]
    model = load_model_from_args(args)
    from interp.model.architecture import get_adapter

    a = get_adapter(model)
    if args.top_k > a.n_layers * a.d_mlp:
        raise ValueError(f"--top-k {args.top_k} is more than the model's {a.n_layers * a.d_mlp} value vectors "
                         f"({a.n_layers} layers x {a.d_mlp})")
    table = find_toxic_neurons(model, direction, top_k=args.top_k, filter_prompts=prompts,
                               n_new_tokens=args.n_new_tokens, keep=args.keep, batch_size=args.batch_size,
                               positions=args.positions)
    table.meta["probe"]["path"] = str(args.probe)
    out = table.to_json(args.out)
    kept = table.kept()
    print(f"{len(kept)} of {len(table)} candidates kept -> {out}")
    print(table.to_frame().head(10).to_string(index=False))
    return 0


def _table_neurons(path: str, use_all: bool = False) -> list[tuple[int, int]]:
    from interp.neurons.ranking import ToxicNeurons

    table = ToxicNeurons.from_json(path)
    chosen = table if use_all else table.kept()
    if not len(chosen):
        raise ValueError(f"{path}: no kept neurons; pass --all to use every candidate")
    return chosen.layers_neurons()


def cmd_project(args: argparse.Namespace) -> int:
    from interp.core.artifacts import atomic_write_text, write_csv, write_manifest
    from interp.model.loading import model_id
    from interp.neurons.vocab import project_to_vocab

    check_flag("--k", args.k, ge=1)
    check_out_dir(args.out_dir, "--out-dir")
    neurons = _table_neurons(args.neurons, args.all)
    model = load_model_from_args(args)
    _check_in_model(model, neurons, args.neurons)
    lexicons = None
    try:
        from interp.data.sources import load_lexicons

        lexicons = load_lexicons(args.data_root)
    except (OSError, ValueError) as e:
        print(f"xdetox: warning: no lexicons ({e}); tokens get script tags only")
    # Token languages measured on the data root's text, as the pipeline does; script tags only without data.
    token_languages = None
    try:
        from interp.neurons.activations import tokenizer_of
        from interp.crosslingual.token_languages import token_languages_from_data

        token_languages = token_languages_from_data(tokenizer_of(model), args.data_root, args.languages,
                                                    gettext=args.gettext)
    except (OSError, ValueError) as e:
        print(f"xdetox: warning: token languages not measured ({e}); tokens get script tags")
    proj = project_to_vocab(model, neurons, k=args.k, lexicons=lexicons, token_languages=token_languages)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "vocab_table.csv", proj.table)
    write_csv(out / "value_language_mass.csv", proj.language_mass)
    write_csv(out / "value_per_vector.csv", proj.per_vector)
    atomic_write_text(out / "tokens.html", proj.to_html())
    write_manifest(out, kind="vocab-projection", model_id=model_id(model), config={"k": args.k, **proj.meta},
                   inputs={"neurons": args.neurons})
    print(proj.token_table(10).to_string(index=False))
    return 0


def cmd_activations(args: argparse.Namespace) -> int:
    from interp.core.artifacts import atomic_write_text, write_csv, write_manifest
    from interp.data.rtplx import load_rtplx
    from interp.data.split import rtplx_split
    from interp.neurons.key_activations import key_activations
    from interp.data.languages import normalize_languages
    from interp.model.loading import base_and_tuned

    for flag in ("max_prompts", "n_new_tokens", "batch_size", "n_boot"):
        check_flag("--" + flag.replace("_", "-"), getattr(args, flag), ge=1)
    check_out_dir(args.out_dir, "--out-dir")
    neurons = _table_neurons(args.neurons)
    langs = normalize_languages(args.languages, where="--languages")
    prompts_all = rtplx_split(load_rtplx(args.data_root, langs), "eval", root=args.data_root)
    prompts: dict[str, list[str]] = {}
    ids: dict[str, list[str]] = {}
    for lang in langs:
        ps = [p for p in prompts_all if p.lang == lang]
        ps = random.Random(f"{args.seed}:{lang}").sample(ps, min(args.max_prompts, len(ps)))
        if ps:
            prompts[lang], ids[lang] = [p.text for p in ps], [p.id for p in ps]
    model = load_model_from_args(args)
    _check_in_model(model, neurons, args.neurons)
    models = dict(zip(("base", "dpo"), base_and_tuned(model))) if args.adapter else {"model": model}
    res = key_activations(models, neurons, prompts, n_new_tokens=args.n_new_tokens, batch_size=args.batch_size,
                          positions=args.positions,
                          n_boot=args.n_boot, seed=args.seed)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "key_activations.csv", res.summary)
    write_csv(out / "key_activations_per_neuron.csv", res.per_neuron)
    write_csv(out / "key_ratio.csv", res.ratio_to_english)
    atomic_write_text(out / "key_activations.html", res.figure().to_html(include_plotlyjs=True))
    write_manifest(out, kind="key-activations", seed=args.seed, config=res.meta, inputs={"prompt_ids": ids})
    print(res.summary.to_string(index=False))
    return 0


def _check_in_model(model: Any, neurons: list[tuple[int, int]], source: str) -> None:
    """Raise an error naming ``source`` when a (layer, neuron) pair is outside the model."""
    from interp.neurons.activations import validate_neurons

    try:
        validate_neurons(model, neurons)
    except IndexError as e:  # the library's range message, told about the file or flag it came from
        raise ValueError(f"{source}: {e}; use a neuron table made for this model") from None


def _parse_neuron(text: str) -> tuple[int, int]:
    try:
        layer, idx = text.split(":")
        return int(layer), int(idx)
    except ValueError:
        raise ValueError(f"--neuron {text!r}: expected LAYER:INDEX, e.g. 14:5723") from None


def cmd_intervene(args: argparse.Namespace) -> int:
    from interp.neurons.interventions import NeuronIntervention, generate_with_intervention

    neurons = [_parse_neuron(n) for n in args.neuron]
    if args.neurons:
        neurons += _table_neurons(args.neurons)
    if not neurons:
        raise ValueError("no neurons: pass --neurons TABLE.json or --neuron LAYER:INDEX")
    check_flag("--max-new-tokens", args.max_new_tokens, ge=1)
    model = load_model_from_args(args)
    _check_in_model(model, neurons, args.neurons or "--neuron")
    if getattr(model, "tokenizer", None) is None:
        raise ValueError(f"--model {args.model}: has no tokenizer, and intervening on prompts needs one; add the "
                         "tokenizer files (tokenizer.json, tokenizer_config.json) to the model directory")
    iv = NeuronIntervention(neurons, args.mode, args.value, args.positions)
    before = generate_with_intervention(model, args.prompt, None, args.max_new_tokens)
    after = generate_with_intervention(model, args.prompt, iv, args.max_new_tokens)
    for prompt, b, a in zip(args.prompt, before, after):
        print(f"{prompt!r}\n  plain:        {b!r}\n  intervention: {a!r}")
    return 0
