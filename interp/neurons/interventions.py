"""Neuron interventions: add to, scale or set MLP activations, during any forward or generation.

Changing activation ``m_i`` by ``Δ`` changes the MLP output by exactly ``Δ · v_i`` (its value
vector). Paper Table 5: ``+5`` on 4 "sexual" neurons at every position, greedy 10 tokens. Paper
Fig. 2: offsets 0 .. -5 on all actual-source neurons against per-language toxicity
(:func:`intervention_sweep`; the scorer is any callable, so interp does not import the scorers).

``positions="generated"`` edits only forward passes that feed generated tokens: inside a context
the first forward pass per layer is taken as the prompt and left alone; every later pass (one
KV-cached token each) is edited. :func:`generate_with_intervention` resets that per batch.
"""
from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Literal, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.neurons.activations import (activation_hooks, as_neuron_list, encode_prompts, generation_budget, greedy_decode,
                                group_by_layer, tokenizer_of, validate_neurons, validate_prompts, validate_prompts_by_language)
from interp.model.architecture import get_adapter, require_generation
from interp.model.loading import activate

Mode = Literal["add", "scale", "set"]
Positions = Literal["all", "generated"]


@dataclass
class NeuronIntervention:
    """Edit of neuron activations: ``add`` value, ``scale`` by value, or ``set`` to value."""

    neurons: list[tuple[int, int]]
    mode: Mode = "add"
    value: float | Sequence[float] = 0.0
    positions: Positions = "all"
    _calls: dict[int, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in ("add", "scale", "set"):
            raise ValueError(f"mode must be 'add', 'scale' or 'set', got {self.mode!r}")
        if self.positions not in ("all", "generated"):
            raise ValueError(f"positions must be 'all' or 'generated', got {self.positions!r}")
        self.neurons = [(int(l), int(i)) for l, i in as_neuron_list(self.neurons)]
        if not self.neurons:
            raise ValueError("NeuronIntervention needs at least one (layer, neuron) pair")
        vals = self.values()
        if len(vals) != len(self.neurons):
            raise ValueError(f"value has {len(vals)} entries but there are {len(self.neurons)} neurons; "
                             "pass one number or one per neuron")

    def values(self) -> list[float]:
        """Return the per-neuron values (a scalar is broadcast)."""
        if isinstance(self.value, (int, float)):
            return [float(self.value)] * len(self.neurons)
        return [float(v) for v in self.value]

    def reset(self) -> None:
        """Forget how many forward passes were seen (a new prompt batch starts)."""
        self._calls.clear()

    def _plan(self) -> dict[int, tuple[Int[Tensor, " _n"], Float[Tensor, " _n"]]]:
        """Return {layer: (neuron columns, values)} for the layers this intervention touches."""
        vals = self.values()
        plan: dict[int, tuple[Tensor, Tensor]] = {}
        for layer, group in group_by_layer(self.neurons).items():
            plan[layer] = (torch.tensor([u for _, u in group]), torch.tensor([vals[j] for j, _ in group]))
        return plan

    def edit(self, layer: int, act: Float[Tensor, "batch pos d_mlp"],
             plan: dict[int, tuple[Int[Tensor, " _n"], Float[Tensor, " _n"]]] | None = None
             ) -> Float[Tensor, "batch pos d_mlp"]:
        """Return ``act`` with this layer's neurons edited (a new tensor; ``act`` is untouched)."""
        plan = plan or self._plan()
        if layer not in plan:
            return act
        n = self._calls.get(layer, 0)
        self._calls[layer] = n + 1
        if self.positions == "generated" and n == 0:
            return act
        cols, vals = plan[layer]
        cols = cols.to(act.device)
        vals = vals.to(device=act.device, dtype=act.dtype)
        out = act.clone()
        if len(set(cols.tolist())) == len(cols):  # the common case, vectorised (AurA edits thousands)
            if self.mode == "add":
                out[..., cols] = out[..., cols] + vals
            elif self.mode == "scale":
                out[..., cols] = out[..., cols] * vals
            else:
                out[..., cols] = vals.expand_as(out[..., cols])
            return out
        # Repeated neurons compose in order, like applying the edits one after another.
        for c, v in zip(cols.tolist(), vals):
            if self.mode == "add":
                out[..., c] = out[..., c] + v
            elif self.mode == "scale":
                out[..., c] = out[..., c] * v
            else:
                out[..., c] = v
        return out

    def hooks(self, model: Any) -> list[tuple[str, Callable[..., Tensor]]]:
        """Return TransformerLens ``(hook_name, fn)`` pairs for ``bridge.hooks(fwd_hooks=...)``."""
        with activate(model) as m:
            validate_neurons(m, self.neurons)
            a = get_adapter(m)
        plan = self._plan()
        self.reset()
        return [(a.hook_name(layer), lambda act, hook, _l=layer: self.edit(_l, act, plan)) for layer in plan]


@contextlib.contextmanager
def intervene(model: Any, intervention: NeuronIntervention) -> Iterator[Any]:
    """Apply ``intervention`` to every forward pass of ``model`` inside the block; yield the model.

    Implemented as forward pre-hooks on the down projections of the touched layers only.
    """
    with activate(model) as m:
        validate_neurons(m, intervention.neurons)
        plan = intervention._plan()
        intervention.reset()
        with activation_hooks(m, {l: (lambda layer, act: intervention.edit(layer, act, plan)) for l in plan}):
            yield m
        intervention.reset()


@torch.no_grad()
def generate_with_intervention(model: Any, prompts: list[str], intervention: NeuronIntervention | None,
                               max_new_tokens: int = 10, *, batch_size: int = 16) -> list[str]:
    """Return the greedy continuations (new text only) of ``prompts`` under ``intervention``."""
    validate_prompts(prompts)
    with activate(model) as m:
        require_generation(get_adapter(m).spec, "the neuron intervention (greedy continuations)")
        ids = encode_prompts(m, prompts, max_length=generation_budget(m, max_new_tokens))
        tok = tokenizer_of(m)
        if intervention is None:
            toks = greedy_decode(m, ids, max_new_tokens, batch_size=batch_size)
        else:
            with intervene(m, intervention):
                toks = greedy_decode(m, ids, max_new_tokens, batch_size=batch_size,
                                     on_batch=lambda _idx: intervention.reset())
    return [tok.decode(t.tolist(), skip_special_tokens=True) for t in toks]


def intervention_sweep(
    model: Any, neurons: Sequence[tuple[int, int]], prompts_by_language: dict[str, list[str]],
    offsets: Sequence[float] = (0, -1, -2, -3, -4, -5),
    score_fn: Callable[[list[str], str], list[float]] | None = None, *,
    k: int | None = None, max_new_tokens: int = 20, positions: Positions = "all", batch_size: int = 16,
    seed: int = 0, progress: bool = True,
) -> Any:
    """Return a DataFrame ``(offset, lang, mean_toxicity, n)``: toxicity of greedy continuations
    when every neuron's activation is shifted by each offset (paper Fig. 2).

    ``score_fn(texts, lang)`` scores continuations (any scorer); ``k`` caps the prompts per
    language (a seeded sample, the same prompts for every offset). NaN scores (failed items) are
    left out of the mean and of ``n``.
    """
    import pandas as pd

    with activate(model) as m:
        require_generation(get_adapter(m).spec, "the intervention offset sweep")
    if score_fn is None:
        raise ValueError("intervention_sweep needs score_fn(texts, lang) -> list[float] (e.g. a toxicity scorer)")
    chosen: dict[str, list[str]] = {}
    for code, ps in validate_prompts_by_language(prompts_by_language).items():
        if k is not None and len(ps) > k:
            ps = random.Random(f"{seed}:{code}").sample(ps, k)
        chosen[code] = ps
    rows = []
    jobs = [(o, lang) for o in offsets for lang in chosen]
    it: Any = jobs
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(jobs, desc="intervention sweep (offset x language)", leave=False, unit="setting")
    for offset, lang in it:
        iv = None if offset == 0 else NeuronIntervention(as_neuron_list(neurons), "add", float(offset), positions)
        texts = generate_with_intervention(model, chosen[lang], iv, max_new_tokens, batch_size=batch_size)
        scores = [float(s) for s in score_fn(texts, lang)]
        if len(scores) != len(texts):
            raise ValueError(f"score_fn returned {len(scores)} scores for {len(texts)} texts ({lang})")
        valid = [s for s in scores if s == s]  # a scorer marks failed items NaN: average the rest, count them
        rows.append({"offset": float(offset), "lang": lang,
                     "mean_toxicity": sum(valid) / len(valid) if valid else float("nan"), "n": len(valid)})
    return pd.DataFrame(rows, columns=["offset", "lang", "mean_toxicity", "n"])


__all__ = ["NeuronIntervention", "intervene", "generate_with_intervention", "intervention_sweep"]
