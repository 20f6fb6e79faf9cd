"""Quality report of the embedded default model: does it make the interpretability pipeline meaningful?

App layer (it may import ``probes``). Six criteria, each a figure against a bar:

1. ``build_time`` – the build's wall time (and throughput) against 15 minutes on 2 cores;
2. ``heldout_loss`` – held-out LM loss per language on RTP-LX evaluation prompts (reported);
3. ``probe_vs_random`` – English ParaDetox probe test accuracy minus the same probe on a
   random-init model of the same config, against +10 points;
4. ``toxic_value_vectors`` – of the 20 value vectors most cosine-aligned with the probe, how
   many have >= 2 lexicon bad words (any language) among their top-20 vocabulary projections,
   against 5;
5. ``toxic_continuations`` – share of greedy 20-token continuations of toxic English evaluation
   prompts that contain an English lexicon bad word, against 10% (clean prompts as reference);
6. ``retrieval`` – bilingual top-1 retrieval on translated-200 (en<->X, mean of both directions
   and of the non-English languages) at the best layer, against 0.25 (issue 17's bar 1: does the
   model align languages at all? Chance is 1/200).

Only ids and aggregates are reported: no prompt text.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from interp.core.artifacts import read_json, stable_hash

BUILD_BAR_S = 15 * 60
PROBE_MARGIN_BAR = 0.10
VECTORS_BAR = 5
CONTINUATION_BAR = 0.10
RETRIEVAL_BAR = 0.25


@dataclass
class Criterion:
    """One quality criterion: its figure, the bar, and whether the figure clears it."""

    name: str
    figure: float
    bar: str
    passed: bool
    detail: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """Return the one-line printout ``PASS name: figure (bar ...)``."""
        return f"{'PASS' if self.passed else 'FAIL'}  {self.name}: {self.figure:.4g}  (bar: {self.bar})"


@dataclass
class QualityConfig:
    """How the quality report measures (sizes kept small enough for a CPU)."""

    probe_examples: int = field(default=6000, metadata={"help": "ParaDetox texts used for the probe (whole groups)"})
    probe_solver: str = field(default="paper", metadata={"help": "probes solver: paper (Adam, BCE, no bias) or logreg"})
    top_vectors: int = field(default=20, metadata={"help": "value vectors most aligned with the probe to inspect"})
    top_tokens: int = field(default=20, metadata={"help": "vocabulary projections per value vector"})
    min_toxic_tokens: int = field(default=2, metadata={"help": "bad words among the top tokens for a vector to count"})
    n_prompts: int = field(default=100, metadata={"help": "toxic English eval prompts to continue greedily"})
    toxic_threshold: float = field(default=3.0, metadata={"help": "RTP-LX Toxicity (1-5) at or above which a prompt is toxic"})
    clean_threshold: float = field(default=1.5, metadata={"help": "RTP-LX Toxicity at or below which a prompt is clean"})
    new_tokens: int = field(default=20, metadata={"help": "greedy tokens per continuation"})
    seed: int = field(default=99, metadata={"help": "seed of the probe split, random init and prompt draw"})
    num_threads: int = field(default=1, metadata={
        "help": "CPU threads (0: torch's default); one thread avoids OpenMP stalls on a shared machine"})


def check_build(manifest: dict[str, Any]) -> Criterion:
    """Return criterion 1 from a default-model manifest."""
    secs = float(manifest["build_seconds"])
    tps = float(manifest.get("tokens_per_s") or 0)
    ok = secs <= BUILD_BAR_S and manifest.get("stopped_by") == "token_budget"
    return Criterion("build_time_s", secs, f"<= {BUILD_BAR_S} s on 2 cores, token budget reached", ok,
                     {"tokens_per_s": tps, "tokens_trained": manifest.get("tokens_trained"),
                      "stopped_by": manifest.get("stopped_by"), "train_seconds": manifest.get("train_seconds"),
                      "torch_threads": manifest.get("torch_threads")})


def check_heldout(manifest: dict[str, Any]) -> Criterion:
    """Return criterion 2: mean held-out loss, passing when every recipe language is reported."""
    losses = manifest.get("heldout_loss_by_language") or {}
    langs = list((manifest.get("config") or {}).get("languages") or losses)
    missing = [l for l in langs if l not in losses]
    mean = sum(losses.values()) / max(1, len(losses))
    return Criterion("heldout_loss_mean_nats", mean, "reported for every language", not missing and bool(losses),
                     {"by_language": losses, "missing": missing})


def check_probe(metrics: dict[str, Any]) -> Criterion:
    """Return criterion 3 from ``probes.train_probe`` metrics (with ``random_init``)."""
    acc = float(metrics["test"]["accuracy"])
    base = float(metrics["random_init"]["test"]["accuracy"])
    return Criterion("probe_acc_minus_random_init", acc - base, f">= {PROBE_MARGIN_BAR:+.2f}",
                     acc - base >= PROBE_MARGIN_BAR,
                     {"test_accuracy": acc, "random_init_test_accuracy": base,
                      "test_roc_auc": metrics["test"].get("roc_auc"),
                      "random_init_test_roc_auc": metrics["random_init"]["test"].get("roc_auc"),
                      "n_train": metrics.get("n_train"), "n_test": metrics.get("n_test")})


@torch.no_grad()
def toxic_value_vectors(model: Any, direction: torch.Tensor, lexicon: Any, *, top_vectors: int = 20,
                        top_tokens: int = 20, min_toxic: int = 2) -> Criterion:
    """Return criterion 4: how many top probe-aligned value vectors project onto >= ``min_toxic`` bad words.

    ``model`` is a bridge (it carries the tokenizer); the projection and its toxic tags are
    :func:`interp.neurons.vocab.project_to_vocab`'s, so this criterion counts what stage 2 reports.
    """
    from interp.model.architecture import get_adapter
    from interp.neurons.ranking import rank_value_vectors
    from interp.neurons.vocab import project_to_vocab

    cos, layers, neurons = rank_value_vectors(get_adapter(model).value_vectors(), direction.float(), top_vectors)
    pairs = list(zip(layers.tolist(), neurons.tolist()))
    table = project_to_vocab(model, pairs, k=top_tokens, lexicons=lexicon).table
    rows = []
    for c, (l, i) in zip(cos.tolist(), pairs):
        mine = table[(table.layer == l) & (table.neuron == i)].sort_values("rank")
        toxic = mine.loc[mine.toxic, "token"].tolist()
        rows.append({"layer": l, "neuron": i, "cosine": round(c, 4), "n_toxic": len(toxic), "toxic_tokens": toxic})
    n = sum(r["n_toxic"] >= min_toxic for r in rows)
    return Criterion("toxic_value_vectors", n, f">= {VECTORS_BAR} of {top_vectors} with >= {min_toxic} bad words "
                     f"in top-{top_tokens}", n >= VECTORS_BAR, {"vectors": rows})


def check_continuations(model: Any, prompts: list[Any], lexicon: Any, cfg: QualityConfig) -> Criterion:
    """Return criterion 5 over RTP-LX English evaluation prompts (toxic vs clean as reference).

    Continuations are the library's greedy ones (:func:`interp.neurons.interventions.generate_with_intervention`
    with no intervention): the tokenization rule's prompt ids, left-padded, KV-cached, never stopping at EOS.
    """
    from interp.neurons.interventions import generate_with_intervention

    rng = random.Random(cfg.seed)
    toxic = sorted((p for p in prompts if (p.toxicity or 0) >= cfg.toxic_threshold), key=lambda p: p.id)
    clean = sorted((p for p in prompts if p.toxicity is not None and p.toxicity <= cfg.clean_threshold),
                   key=lambda p: p.id)
    toxic = rng.sample(toxic, min(cfg.n_prompts, len(toxic)))
    clean = rng.sample(clean, min(cfg.n_prompts, len(clean)))
    if not toxic:
        raise ValueError(f"no English evaluation prompt has Toxicity >= {cfg.toxic_threshold}")

    def rate(ps: list[Any]) -> float:
        conts = generate_with_intervention(model, [p.text for p in ps], None, cfg.new_tokens, batch_size=32)
        return sum(bool(lexicon.hits(c, "en")) for c in conts) / max(1, len(conts))

    r_toxic, r_clean = rate(toxic), rate(clean) if clean else float("nan")
    return Criterion("toxic_continuation_rate", r_toxic, f">= {CONTINUATION_BAR:.2f}", r_toxic >= CONTINUATION_BAR,
                     {"n_toxic_prompts": len(toxic), "clean_prompt_rate": r_clean, "n_clean_prompts": len(clean),
                      "prompt_ids_hash": stable_hash(sorted(p.id for p in toxic))})


def check_retrieval(per_layer: Any) -> Criterion:
    """Return criterion 6 from :class:`interp.crosslingual.retrieval.RetrievalResult`'s ``per_layer`` table.

    The figure is :func:`interp.crosslingual.retrieval.best_layer`'s (per layer, the mean over
    languages of en->X and X->en). Layer 0 is the embeddings, where shared surface tokens lift
    retrieval without any alignment, so the detail also names the best transformer block.
    """
    from interp.crosslingual.retrieval import best_layer

    b = best_layer(per_layer)
    return Criterion("retrieval_top1_best_layer", b.figure, f">= {RETRIEVAL_BAR:.2f} (en<->X, best layer)",
                     b.figure >= RETRIEVAL_BAR,
                     {"best_layer": b.layer, "best_block": b.block_layer, "best_block_figure": b.block_figure,
                      "by_layer": b.by_layer, "n_languages": int(per_layer["lang"].nunique())})


def retrieval_criterion(model: Any, data_root: str | os.PathLike[str] | None = None, *,
                        progress: bool = True) -> Criterion:
    """Return criterion 6 on translated-200 (English pivot, every language with a file).

    A data root without a complete translated-200 set fails this criterion, naming the file, and
    leaves the other five to be reported.
    """
    from interp.crosslingual.retrieval import bilingual_retrieval, parallel_texts
    from interp.data.records import DataFormatError

    try:
        parallel = parallel_texts("translated200", root=data_root)
    except (DataFormatError, FileNotFoundError) as e:
        return Criterion("retrieval_top1_best_layer", float("nan"), f">= {RETRIEVAL_BAR:.2f} (en<->X, best layer)",
                         False, {"error": " ".join(str(e).split())})
    res = bilingual_retrieval(model, parallel, pivot="en", progress=progress)
    return check_retrieval(res.per_layer)


def quality_report(model_dir: str | os.PathLike[str], data_root: str | os.PathLike[str] | None = None,
                   cfg: QualityConfig | None = None, *, progress: bool = True) -> list[Criterion]:
    """Return the six criteria for the default model saved in ``model_dir``."""
    from interp.default_model.build import _threads

    cfg = cfg or QualityConfig()
    with _threads(cfg.num_threads):
        return _quality_report(Path(model_dir), data_root, cfg, progress=progress)


def _quality_report(model_dir: Path, data_root: str | os.PathLike[str] | None, cfg: QualityConfig, *,
                    progress: bool) -> list[Criterion]:
    from probes import load_probe_data, train_probe

    from interp.data import rtplx
    from interp.data import split
    from interp.data.lexicon import Lexicon
    from interp.model.loading import load_model

    manifest = read_json(model_dir / "manifest.json")
    out = [check_build(manifest), check_heldout(manifest)]
    model = load_model(str(model_dir), device="cpu", dtype="float32")
    probe, metrics = train_probe(model, load_probe_data("paradetox", data_root=data_root), solver=cfg.probe_solver,
                                 max_examples=cfg.probe_examples, seed=cfg.seed, random_init_baseline=True,
                                 progress=progress)
    out.append(check_probe(metrics))
    lexicon = Lexicon.from_root(data_root)
    out.append(toxic_value_vectors(model, torch.as_tensor(probe.direction_), lexicon, top_vectors=cfg.top_vectors,
                                   top_tokens=cfg.top_tokens, min_toxic=cfg.min_toxic_tokens))
    en_eval = split.rtplx_split(rtplx.load_rtplx(data_root, languages=["en"]), "eval", root=data_root)
    out.append(check_continuations(model, en_eval, lexicon, cfg))
    out.append(retrieval_criterion(model, data_root, progress=progress))
    return out


def format_report(criteria: list[Criterion]) -> str:
    """Return the printable report: one PASS/FAIL line per criterion plus key details."""
    lines = []
    for c in criteria:
        lines.append(c.line())
        if c.name == "build_time_s":
            lines.append(f"      tokens/s {c.detail['tokens_per_s']:.0f}, tokens {c.detail['tokens_trained']}, "
                         f"stopped by {c.detail['stopped_by']}, threads {c.detail['torch_threads']}")
        elif c.name == "heldout_loss_mean_nats":
            lines.append("      " + " ".join(f"{k}={v:.2f}" for k, v in sorted(c.detail["by_language"].items())))
        elif c.name == "probe_acc_minus_random_init":
            lines.append(f"      trained {c.detail['test_accuracy']:.3f} vs random-init "
                         f"{c.detail['random_init_test_accuracy']:.3f} (test n={c.detail['n_test']})")
        elif c.name == "toxic_value_vectors":
            for r in c.detail["vectors"][:10]:
                lines.append(f"      L{r['layer']} N{r['neuron']} cos={r['cosine']:.3f} toxic={r['toxic_tokens']}")
        elif c.name == "toxic_continuation_rate":
            lines.append(f"      toxic prompts {c.figure:.2f} (n={c.detail['n_toxic_prompts']}) vs clean prompts "
                         f"{c.detail['clean_prompt_rate']:.2f} (n={c.detail['n_clean_prompts']})")
        elif c.name == "retrieval_top1_best_layer" and "error" in c.detail:
            lines.append(f"      not measured: {c.detail['error']}")
        elif c.name == "retrieval_top1_best_layer":
            lines.append(f"      best layer L{c.detail['best_layer']} (0 = embeddings), best block "
                         f"L{c.detail['best_block']} {c.detail['best_block_figure']:.3f}, over "
                         f"{c.detail['n_languages']} languages; by layer "
                         + " ".join(f"L{k}={v:.3f}" for k, v in c.detail["by_layer"].items()))
    return "\n".join(lines)


__all__ = ["Criterion", "QualityConfig", "quality_report", "format_report", "check_build", "check_heldout",
           "check_probe", "toxic_value_vectors", "check_continuations", "check_retrieval",
           "retrieval_criterion"]
