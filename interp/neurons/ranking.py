"""Stage 2: locate toxic value vectors (``find_toxic_neurons``) and the ``ToxicNeurons`` table.

Every value vector of every layer is compared with the probe direction by cosine similarity in
one stacked ``[n_layers * d_mlp, d_model]`` matrix-vector product; the global top-k are the
"potential sources". The optional activation filter keeps those whose mean activation at the
last position over ``n_new_tokens`` greedy steps on (English) prompts is positive: the "actual
sources" (paper: 36 of 100 on mGPT).

A probe is anything with a direction: a tensor/array of shape ``[d_model]`` (or ``[1, d_model]``)
or an object with a ``.direction_`` (a fitted ``ToxicityProbe``) or ``.direction`` attribute
(duck-typed; interp never imports ``probes``).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.model.architecture import get_adapter

Keep = Literal["positive_mean", "all"]
FORMAT = "xdetox-toxic-neurons/1"


class ProbeDimensionError(ValueError):
    """The probe direction's size differs from the model's d_model."""


def probe_direction(probe: Any, d_model: int | None = None) -> Float[Tensor, "d_model"]:
    """Return the probe's unit-norm direction as float32 ``[d_model]``, checking its size."""
    raw = getattr(probe, "direction_", None)  # a fitted sklearn-style probe (probes.ToxicityProbe)
    raw = getattr(probe, "direction", probe) if raw is None else raw
    if callable(raw) and not isinstance(raw, (Tensor, np.ndarray)):
        raw = raw()
    try:
        w = torch.as_tensor(np.asarray(raw.detach().cpu() if isinstance(raw, Tensor) else raw), dtype=torch.float32)
    except (TypeError, ValueError) as e:
        raise TypeError(f"probe: expected a [d_model] tensor/array or an object with .direction_/.direction, "
                        f"got {type(probe).__name__}") from e
    if w.dim() == 2 and 1 in w.shape:
        w = w.reshape(-1)
    if w.dim() != 1:
        raise ProbeDimensionError(f"probe direction has shape {tuple(w.shape)}; expected a vector [d_model]")
    if d_model is not None and w.numel() != d_model:
        raise ProbeDimensionError(
            f"probe dimension mismatch: the probe direction has {w.numel()} entries but the model has "
            f"d_model={d_model}; train the probe on this model's hidden states (xdetox probe train --model ...)")
    norm = w.norm()
    if not torch.isfinite(norm) or norm == 0:
        raise ValueError("probe direction is zero or not finite; cannot compute cosine similarities")
    return w / norm


def rank_value_vectors(values: Float[Tensor, "n_layers d_mlp d_model"], direction: Float[Tensor, "d_model"],
                       top_k: int) -> tuple[Float[Tensor, "k"], Int[Tensor, "k"], Int[Tensor, "k"]]:
    """Return (cosines, layers, neurons) of the global top-k value vectors by cosine to ``direction``."""
    n_layers, d_mlp, d_model = values.shape
    flat = values.reshape(n_layers * d_mlp, d_model)  # one stacked op over every layer
    w = direction.to(flat.dtype).to(flat.device)
    dots = flat @ w
    norms = torch.linalg.vector_norm(flat, dim=-1).clamp_min(1e-12)
    cos = dots / (norms * w.norm())
    k = min(top_k, cos.numel())
    top = torch.topk(cos, k)
    idx = top.indices.cpu()
    return top.values.cpu(), idx // d_mlp, idx % d_mlp


@dataclass(frozen=True)
class NeuronRow:
    """One candidate toxic neuron."""

    rank: int
    layer: int
    neuron: int
    cosine: float
    mean_activation: float | None
    kept: bool


@dataclass
class ToxicNeurons:
    """Ranked candidate toxic neurons (rank, layer, neuron, cosine, mean_activation, kept)."""

    rows: list[NeuronRow]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[NeuronRow]:
        return iter(self.rows)

    def __getitem__(self, i: int) -> NeuronRow:
        return self.rows[i]

    def kept(self) -> "ToxicNeurons":
        """Return the subset that passed the activation filter (all rows when none was run)."""
        return ToxicNeurons([r for r in self.rows if r.kept], {**self.meta, "subset": "kept"})

    def analysed(self) -> "ToxicNeurons":
        """Return the neurons the study analyses downstream: the kept ones, else every candidate (none passed)."""
        kept = self.kept()
        return kept if len(kept) else self

    def layers_neurons(self) -> list[tuple[int, int]]:
        """Return ``[(layer, neuron), ...]`` in rank order."""
        return [(r.layer, r.neuron) for r in self.rows]

    def to_frame(self) -> Any:
        """Return the table as a pandas DataFrame."""
        import pandas as pd

        cols = ["rank", "layer", "neuron", "cosine", "mean_activation", "kept"]
        return pd.DataFrame([asdict(r) for r in self.rows], columns=cols)

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write the table and its metadata (model, probe, top_k, versions) atomically as JSON."""
        from interp.core.artifacts import make_manifest, write_json

        manifest = make_manifest(kind="toxic-neurons", model_id=self.meta.get("model_id"),
                                 config={k: v for k, v in self.meta.items() if k != "model_id"})
        return write_json(path, {"format": FORMAT, "meta": self.meta, "manifest": manifest,
                                 "rows": [asdict(r) for r in self.rows]})

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> "ToxicNeurons":
        """Read a table written by :meth:`to_json`, with a clear error for a foreign file."""
        from interp.core.artifacts import read_json

        data = read_json(path)
        if not isinstance(data, dict) or data.get("format") != FORMAT or "rows" not in data:
            raise ValueError(f"{path}: not a toxic-neuron table (field 'format' must be {FORMAT!r}); "
                             "write it with `xdetox neurons find` or ToxicNeurons.to_json")
        if not isinstance(data["rows"], list):
            raise ValueError(f"{path}: field 'rows' must be a list of neuron rows, got {type(data['rows']).__name__}")
        import math

        rows = []
        for j, r in enumerate(data["rows"]):
            if not isinstance(r, dict):
                raise ValueError(f"{path}: rows[{j}] must be an object with rank, layer, neuron, cosine, "
                                 f"mean_activation, kept; got {type(r).__name__}")

            def field(name: str, kind: str, *, optional: bool = False) -> Any:
                if name not in r and optional:
                    return None
                if name not in r:
                    raise ValueError(f"{path}: rows[{j}] has no field {name!r}; expected rank, layer, neuron, "
                                     "cosine, mean_activation, kept")
                v = r[name]
                if v is None and optional:
                    return None
                ok = {"int": isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                      "float": isinstance(v, (int, float)) and not isinstance(v, bool)
                      and (math.isfinite(v) or name == "mean_activation"),
                      "bool": isinstance(v, bool)}[kind]
                if not ok:
                    want = {"int": "a non-negative integer", "float": "a finite number", "bool": "true or false"}
                    raise ValueError(f"{path}: rows[{j}] field {name!r} must be {want[kind]}, got {v!r}")
                return v

            rows.append(NeuronRow(rank=field("rank", "int"), layer=field("layer", "int"),
                                  neuron=field("neuron", "int"), cosine=float(field("cosine", "float")),
                                  mean_activation=None if (ma := field("mean_activation", "float", optional=True))
                                  is None else float(ma), kept=field("kept", "bool")))
        return cls(rows, dict(data.get("meta", {})))

    def __repr__(self) -> str:
        n_kept = sum(r.kept for r in self.rows)
        return f"ToxicNeurons({len(self.rows)} rows, {n_kept} kept, model={self.meta.get('model_id')!r})"


def _probe_info(probe: Any, direction: Tensor) -> dict[str, Any]:
    from interp.core.artifacts import stable_hash

    info: dict[str, Any] = {"type": type(probe).__name__, "d_model": int(direction.numel()),
                            "direction_hash": stable_hash([round(float(x), 6) for x in direction.tolist()])}
    meta = getattr(probe, "meta_", None)
    if isinstance(meta, dict):
        info.update({k: meta[k] for k in ("model_id", "fingerprint", "data", "source") if k in meta})
    return info


@torch.no_grad()
def find_toxic_neurons(
    model: Any, probe: Any, *, top_k: int = 100, filter_prompts: Sequence[str] | None = None,
    n_new_tokens: int = 20, keep: Keep = "positive_mean", batch_size: int = 16, progress: bool = True,
    positions: Literal["generation", "prompt"] = "generation",
) -> ToxicNeurons:
    """Return the global top-k value vectors by cosine to the probe, optionally activation-filtered.

    With ``filter_prompts`` (English prompts), each candidate's mean activation at the last
    position over ``n_new_tokens`` greedy steps is recorded and ``kept`` is ``mean > 0``
    (``keep="positive_mean"``) or always true (``keep="all"``). Without prompts every row is kept
    and ``mean_activation`` is None. ``positions="prompt"`` averages over the prompt's own tokens
    instead of greedy steps (one forward, no decoding): the filter for encoders, which cannot
    generate (``positions="generation"`` on an encoder is refused, naming the stage and family).
    """
    from interp.neurons.activations import collect_generation_activations, collect_prompt_activations
    from interp.model.loading import activate, model_id

    if positions not in ("generation", "prompt"):
        raise ValueError(f"positions must be 'generation' or 'prompt', got {positions!r}")

    if keep not in ("positive_mean", "all"):
        raise ValueError(f"keep must be 'positive_mean' or 'all', got {keep!r}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    with activate(model) as m:
        adapter = get_adapter(m)
        direction = probe_direction(probe, adapter.d_model)
        cos, layers, units = rank_value_vectors(adapter.value_vectors(), direction, top_k)
    neurons = [(int(l), int(u)) for l, u in zip(layers, units)]
    means: list[float | None] = [None] * len(neurons)
    if filter_prompts is not None and positions == "prompt":
        acts = collect_prompt_activations(model, list(filter_prompts), neurons, batch_size=batch_size,
                                          progress=progress)
        means = [float(x) for x in acts.mean(dim=(0, 1))]
    elif filter_prompts is not None:
        acts = collect_generation_activations(model, list(filter_prompts), neurons, n_new_tokens=n_new_tokens,
                                              batch_size=batch_size, progress=progress)
        means = [float(x) for x in acts.mean(dim=(0, 1))]
    rows = [NeuronRow(rank=r + 1, layer=l, neuron=u, cosine=float(c), mean_activation=mu,
                      kept=True if (mu is None or keep == "all") else mu > 0)
            for r, ((l, u), c, mu) in enumerate(zip(neurons, cos.tolist(), means))]
    meta = {"model_id": model_id(model), "probe": _probe_info(probe, direction), "top_k": top_k,
            "n_layers": adapter.n_layers, "d_mlp": adapter.d_mlp,
            "filter": None if filter_prompts is None else {"n_prompts": len(filter_prompts),
                                                          "n_new_tokens": n_new_tokens, "keep": keep,
                                                          **({"positions": "prompt"} if positions == "prompt" else {})}}
    return ToxicNeurons(rows, meta)


__all__ = ["find_toxic_neurons", "ToxicNeurons", "NeuronRow", "probe_direction", "rank_value_vectors",
           "ProbeDimensionError"]
