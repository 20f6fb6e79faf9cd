"""Training-free baselines, each a context manager like :func:`interp.neurons.interventions.intervene`.

* Lee et al. (2024) residual steering (:func:`residual_steering`): subtract ``alpha * d`` from
  the residual stream leaving block ``layer`` (default: the last block, i.e. just before the final
  norm). Paper values: probe direction alpha 50, ``MLP.v^19_770`` alpha 20 on GPT-2 medium. Lee's
  alphas multiply the *raw* vectors (the probe's weight vector, the value vector as stored), so
  ``scale="raw"`` is the default and reproduces them; ``scale="unit"`` normalises ``d`` first, so
  that ``alpha`` is a distance in the residual space, comparable across vectors.
* Lee et al. "un-aligning" (:func:`scale_keys`): multiply chosen neurons' key vectors by
  ``alpha`` (paper: the 7 top toxic keys x10 on the DPO model). Implemented on the *outputs* of
  the up (and, for gated MLPs, gate) projection: ``pre_i -> alpha * (pre_i - b_i) + b_i``, which
  is exactly scaling the key weights (LoRA deltas included) while leaving the bias alone.
* AurA (Suau et al. 2024; :func:`aura_auroc`, :func:`aura`): per-neuron AUROC of pooled
  activations on toxic vs clean texts over all neurons, and damping
  ``alpha_i = 1 - 2 (AUROC_i - 0.5)`` for neurons with AUROC > 0.5 (others untouched), applied as
  a scaling intervention.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Sequence

import torch
from jaxtyping import Float
from torch import Tensor, nn

from interp.neurons.activations import activation_hooks, validate_neurons, validate_prompts
from interp.model.architecture import unwrap, get_adapter, hf_model_of
from interp.neurons.interventions import NeuronIntervention, intervene
from interp.model.loading import activate


def _first(out: Any) -> Tensor:
    return out[0] if isinstance(out, tuple) else out


def steering_vector(direction: Any, d_model: int, scale: Literal["raw", "unit"] = "raw") -> Float[Tensor, "d_model"]:
    """Return the vector steering subtracts per unit of alpha: raw (Lee et al.) or unit norm.

    ``direction`` is a tensor/array (e.g. a value vector row) or a fitted probe; for a probe the
    raw vector is its weight vector (``coef_``), not the unit ``direction_`` it reports.
    """
    import numpy as np

    from interp.neurons.ranking import probe_direction

    if scale not in ("raw", "unit"):
        raise ValueError(f"scale must be 'raw' (Lee et al.'s alphas) or 'unit', got {scale!r}")
    unit = probe_direction(direction, d_model)  # also checks the size and finiteness
    if scale == "unit":
        return unit
    coef = getattr(direction, "coef_", None)
    raw = coef[0] if coef is not None else direction
    if isinstance(raw, Tensor):
        return raw.detach().float().reshape(-1).cpu()
    return torch.as_tensor(np.asarray(raw), dtype=torch.float32).reshape(-1)


@contextlib.contextmanager
def residual_steering(model: Any, direction: Any, alpha: float, *, layer: int | None = None,
                      scale: Literal["raw", "unit"] = "raw") -> Iterator[Any]:
    """Subtract ``alpha * direction`` from the residual output of block ``layer`` (default last).

    ``scale="raw"`` (default) uses the vector as given, the scale Lee et al.'s alphas (probe 50,
    MLP.v 20) refer to; ``scale="unit"`` normalises it first. See :func:`steering_vector`.
    """
    with activate(model) as m:
        a = get_adapter(m)
        layer = a.n_layers - 1 if layer is None else int(layer)
        block = unwrap(a.block(layer))
        d = steering_vector(direction, a.d_model, scale)

        def hook(_mod: nn.Module, _args: Any, out: Any) -> Any:
            h = _first(out)
            new = h - float(alpha) * d.to(device=h.device, dtype=h.dtype)
            return (new, *out[1:]) if isinstance(out, tuple) else new

        handle = block.register_forward_hook(hook)
        try:
            yield m
        finally:
            handle.remove()


def _bias_of(mod: nn.Module) -> Tensor | None:
    base = getattr(mod, "base_layer", None)
    b = getattr(base if base is not None else mod, "bias", None)
    return None if b is None else b.detach()


@contextlib.contextmanager
def scale_keys(model: Any, neurons: Sequence[tuple[int, int]], alpha: float) -> Iterator[Any]:
    """Multiply the key vectors (up and, if gated, gate columns) of ``neurons`` by ``alpha``."""
    from interp.neurons.activations import group_by_layer

    with activate(model) as m:
        neurons = validate_neurons(m, neurons)
        a = get_adapter(m)
        handles = []
        try:
            for layer, group in group_by_layer(neurons).items():
                cols = torch.tensor(sorted({u for _, u in group}))
                mods = [a.in_proj(layer)] + ([a.gate_proj(layer)] if a.gate_proj(layer) is not None else [])
                for mod in mods:
                    inner = unwrap(mod)
                    bias = _bias_of(inner)

                    def hook(_m: nn.Module, _args: Any, out: Tensor, _c: Tensor = cols, _b: Tensor | None = bias) -> Tensor:
                        c = _c.to(out.device)
                        new = out.clone()
                        b = 0.0 if _b is None else _b[c].to(out.dtype)
                        new[..., c] = float(alpha) * (out[..., c] - b) + b
                        return new

                    handles.append(inner.register_forward_hook(hook))
            yield m
        finally:
            for h in handles:
                h.remove()


@torch.no_grad()
def pooled_activations(model: Any, texts: list[str], *, pooling: Literal["max", "mean"] = "max",
                       batch_size: int = 16, max_length: int = 128,
                       progress: bool = False) -> Float[Tensor, "n_texts n_layers d_mlp"]:
    """Return every neuron's activation pooled over each text's tokens (max or mean), fp32 CPU."""
    from interp.model.tokenization import token_rule

    validate_prompts(texts, where="texts")
    if pooling not in ("max", "mean"):
        raise ValueError(f"pooling must be 'max' or 'mean', got {pooling!r}")
    with activate(model) as m:
        a = get_adapter(m)
        hf = hf_model_of(m)
        device = next(hf.parameters()).device
        # Standalone texts: the rule's "sentence" ids (BOS by the run's policy), cut from the right.
        ids, _ = token_rule(m).encode(list(texts), "sentence", max_length=max_length)
        out = torch.zeros(len(texts), a.n_layers, a.d_mlp)
        state: dict[str, Any] = {}

        def grab(layer: int, act: Tensor) -> None:
            act = act.float()
            mask = state["mask"][..., None]
            if pooling == "max":
                pooled = act.masked_fill(~mask, float("-inf")).amax(dim=1)
            else:
                pooled = (act * mask).sum(1) / mask.sum(1)
            out[state["rows"], layer] = pooled.cpu()

        batches = [list(range(s, min(s + batch_size, len(ids)))) for s in range(0, len(ids), batch_size)]
        it: Any = batches
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(batches, desc="pooled activations", leave=False)
        pad = getattr(hf.config, "pad_token_id", None) or 0
        with activation_hooks(m, {l: grab for l in range(a.n_layers)}):
            for rows in it:
                seqs = [ids[i] for i in rows]
                width = max(map(len, seqs))
                # right padding: positions need no shifting, and the mask excludes the pads from pooling
                batch = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=device)
                mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=device)
                state.update(rows=torch.tensor(rows), mask=mask.bool())
                hf(input_ids=batch, attention_mask=mask)
    return out


def auroc_per_column(pos: Float[Tensor, "n_pos n"], neg: Float[Tensor, "n_neg n"]) -> Float[Tensor, "n"]:
    """Return the AUROC of every column (positives score higher = 1), ties counted half."""
    from scipy.stats import rankdata

    x = torch.cat([pos, neg]).double().numpy()
    ranks = rankdata(x, axis=0)
    n_p, n_n = len(pos), len(neg)
    u = ranks[:n_p].sum(0) - n_p * (n_p + 1) / 2
    return torch.from_numpy(u / (n_p * n_n)).float()


@dataclass
class AurAResult:
    """Per-neuron AUROC ``[n_layers, d_mlp]`` and the damping it implies."""

    auroc: Float[Tensor, "n_layers d_mlp"]
    meta: dict[str, Any] = field(default_factory=dict)

    def damping(self) -> Float[Tensor, "n_layers d_mlp"]:
        """Return alpha = 1 - 2 (AUROC - 0.5) where AUROC > 0.5, else 1."""
        return torch.where(self.auroc > 0.5, 1 - 2 * (self.auroc - 0.5), torch.ones_like(self.auroc))

    def intervention(self) -> NeuronIntervention:
        """Return the AurA scaling as a :class:`NeuronIntervention` (damped neurons only)."""
        alpha = self.damping()
        idx = (self.auroc > 0.5).nonzero().tolist()
        if not idx:
            raise ValueError("AurA: no neuron has AUROC > 0.5 on these texts; nothing to damp")
        return NeuronIntervention([(l, i) for l, i in idx], "scale", [float(alpha[l, i]) for l, i in idx])

    def top(self, n: int = 20) -> list[tuple[int, int, float]]:
        """Return the ``n`` neurons with the highest AUROC as (layer, neuron, auroc)."""
        flat = self.auroc.reshape(-1)
        v, i = torch.topk(flat, min(n, flat.numel()))
        d = self.auroc.shape[1]
        return [(int(j) // d, int(j) % d, float(x)) for x, j in zip(v, i)]


def aura_auroc(model: Any, toxic_texts: list[str], clean_texts: list[str], *,
               pooling: Literal["max", "mean"] = "max", batch_size: int = 16, max_length: int = 128,
               progress: bool = True) -> AurAResult:
    """Return every neuron's AUROC separating toxic from clean texts by its pooled activation."""
    validate_prompts(toxic_texts, where="toxic_texts")
    validate_prompts(clean_texts, where="clean_texts")
    kw = dict(pooling=pooling, batch_size=batch_size, max_length=max_length, progress=progress)
    pos = pooled_activations(model, toxic_texts, **kw)
    neg = pooled_activations(model, clean_texts, **kw)
    n_layers, d_mlp = pos.shape[1:]
    auc = auroc_per_column(pos.reshape(len(pos), -1), neg.reshape(len(neg), -1)).reshape(n_layers, d_mlp)
    return AurAResult(auc, {"pooling": pooling, "n_toxic": len(toxic_texts), "n_clean": len(clean_texts)})


@contextlib.contextmanager
def aura(model: Any, result: AurAResult) -> Iterator[Any]:
    """Apply AurA damping to every forward pass of ``model`` inside the block."""
    with intervene(model, result.intervention()) as m:
        yield m


__all__ = ["residual_steering", "steering_vector", "scale_keys", "aura_auroc", "aura", "AurAResult", "pooled_activations",
           "auroc_per_column"]
