"""Stage 6: bilingual sentence retrieval per layer."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp.core.artifacts import write_csv

if TYPE_CHECKING:
    from interp.app.pipeline import Pipeline


def stage_retrieval(pipe: "Pipeline", d: Path) -> tuple[str, dict[str, Any]]:
    from interp.crosslingual.retrieval import bilingual_retrieval

    c = pipe.config.retrieval
    parallel = pipe.parallel_texts(c.parallel, c.n_sentences)
    layers = tuple(c.layer_range) if c.layer_range else None
    res = bilingual_retrieval(pipe.base_model(), parallel, pivot="en", layers=layers, progress=pipe.progress)
    write_csv(d / "retrieval.csv", res.per_language)
    write_csv(d / "retrieval_per_layer.csv", res.per_layer)
    return (f"top-1 retrieval accuracy (en<->X, mean over layers) {res.per_language['retrieval_acc'].mean():.3f} "
            f"on {c.parallel}", {"per_language": pipe.rel(d / "retrieval.csv"),
                                 "per_layer": pipe.rel(d / "retrieval_per_layer.csv")})
