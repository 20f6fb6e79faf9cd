"""Neuron activations over greedy generation: KV-cached, batched, left-padded, hooks only where needed.

The paper's reference re-runs the whole forward pass for every generated token, one prompt at a
time. Here every prompt batch is encoded once (left padding, explicit position ids), decoded with
the KV cache, and only the selected neuron columns of the needed layers are kept. The tests keep
the slow algorithm as an oracle (fp32, atol 1e-5).

Step ``t`` of ``n`` records the activation at the last position of the ``t``-th forward pass:
step 0 is the last prompt token, step ``t > 0`` is the ``t``-th generated token. So ``n`` steps
take ``n`` forward passes and produce ``n`` greedy tokens (the last one is never fed back).
Decoding never stops at EOS, as in the reference: every prompt gets exactly ``n`` steps.
"""
from __future__ import annotations

import contextlib
import inspect
from collections import defaultdict
from typing import Any, Callable, Iterator, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from interp.model.architecture import unwrap, get_adapter, hf_model_of, require_generation
from interp.model.loading import activate, checked_cache

Neuron = tuple[int, int]


class TokenizerMissingError(ValueError):
    """The model carries no tokenizer."""


def tokenizer_of(model: Any) -> Any:
    """Return the tokenizer attached to a bridge (or ModelView), or raise a clear error."""
    inner = getattr(model, "model", model) if not isinstance(model, nn.Module) else model
    tok = getattr(inner, "tokenizer", None)
    if tok is None:
        raise TokenizerMissingError(
            f"{type(inner).__name__} carries no tokenizer; load it with interp.load_model(...) or "
            "interp.model.loading.wrap_bridge(hf_model, tokenizer)")
    return tok


def encode_prompts(model: Any, prompts: Sequence[str], *, max_length: int | None = None) -> list[list[int]]:
    """Return the prompt ids of each text under the run's tokenization rule (:mod:`interp.model.tokenization`).

    BOS follows the policy recorded on the model (``auto``: the model's own tokenizer); a prompt
    longer than ``max_length`` keeps its end.
    """
    from interp.model.tokenization import token_rule

    validate_prompts(prompts)
    tokenizer_of(model)  # a clear error when the model carries no tokenizer
    out, _ = token_rule(model).encode(list(prompts), "prompt", max_length=max_length)
    return out


def generation_budget(model: Any, n_new_tokens: int) -> int | None:
    """Return the most prompt tokens that leave room for ``n_new_tokens`` in the model's context."""
    from interp.model.tokenization import context_length

    limit = context_length(model)
    return None if limit is None else max(limit - n_new_tokens, 1)


def validate_prompts(prompts: Sequence[str], *, where: str = "prompts") -> None:
    """Raise a clear error for an empty prompt list or non-string prompts."""
    if isinstance(prompts, str):
        raise TypeError(f"{where}: expected a list of strings, got a single string; wrap it in a list")
    if len(prompts) == 0:
        raise ValueError(f"{where}: empty prompt list; pass at least one prompt")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"{where}[{i}]: expected str, got {type(p).__name__}")


def validate_prompts_by_language(prompts_by_language: dict[str, Sequence[str]]) -> dict[str, list[str]]:
    """Return ``{canonical lang: [prompts]}``, with clear errors for empty maps, lists or unknown codes."""
    from interp.data.languages import normalize_language

    if not prompts_by_language:
        raise ValueError("prompts_by_language is empty; pass {lang: [prompts]}")
    out: dict[str, list[str]] = {}
    for lang, prompts in prompts_by_language.items():
        code = normalize_language(lang, where="prompts_by_language")
        validate_prompts(prompts, where=f"prompts_by_language[{lang!r}]")
        out[code] = list(prompts)
    return out


def as_neuron_list(neurons: Any) -> list[Any]:
    """Return ``neurons`` as a list of pairs; accepts pairs or a table with ``layers_neurons()``."""
    if hasattr(neurons, "layers_neurons"):
        return list(neurons.layers_neurons())
    return list(neurons)


def validate_neurons(model: Any, neurons: Sequence[Neuron] | Any) -> list[Neuron]:
    """Return ``neurons`` as a list of int pairs, raising a clear error for out-of-range entries."""
    a = get_adapter(model)
    out: list[Neuron] = []
    neurons = as_neuron_list(neurons)
    if len(neurons) == 0:
        raise ValueError("empty neuron list; pass at least one (layer, neuron) pair")
    for j, n in enumerate(neurons):
        try:
            layer, idx = int(n[0]), int(n[1])
        except (TypeError, ValueError, IndexError) as e:
            raise TypeError(f"neurons[{j}] = {n!r}: expected a (layer, neuron) pair of ints") from e
        if not 0 <= layer < a.n_layers:
            raise IndexError(f"neurons[{j}] = ({layer}, {idx}): layer out of range, the model has "
                             f"{a.n_layers} layers (0..{a.n_layers - 1})")
        if not 0 <= idx < a.d_mlp:
            raise IndexError(f"neurons[{j}] = ({layer}, {idx}): neuron out of range, the MLP has "
                             f"d_mlp={a.d_mlp} units (0..{a.d_mlp - 1})")
        out.append((layer, idx))
    return out


def group_by_layer(neurons: Sequence[Neuron]) -> dict[int, list[tuple[int, int]]]:
    """Return ``{layer: [(position in neurons, unit), ...]}``."""
    groups: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for j, (layer, idx) in enumerate(neurons):
        groups[layer].append((j, idx))
    return dict(groups)


ActivationHook = Callable[[int, Tensor], Tensor | None]


@contextlib.contextmanager
def activation_hooks(model: Any, fns: dict[int, ActivationHook]) -> Iterator[None]:
    """Install ``fn(layer, act) -> new act | None`` on the activations of the given layers.

    The hook is a forward pre-hook on the down projection (its input *is* the activation), so it
    works the same for bridges, plain HF models and PEFT-wrapped layers, and composes after any
    TransformerLens ``hook_post`` edit.
    """
    a = get_adapter(model)
    handles = []
    try:
        for layer, fn in fns.items():
            mod = unwrap(a.out_proj(layer))

            def pre(_m: nn.Module, args: tuple, kwargs: dict, _l: int = layer, _f: ActivationHook = fn):
                new = _f(_l, args[0])
                if new is None:
                    return None
                return (new, *args[1:]), kwargs

            handles.append(mod.register_forward_pre_hook(pre, with_kwargs=True))
        yield
    finally:
        for h in handles:
            h.remove()


def _tl_own(fn: Any) -> bool:
    """Whether a hook function is TransformerLens's own (its wiring: alias mirrors, HookPoint wrappers)."""
    return str(getattr(fn, "__module__", None) or "").startswith("transformer_lens")


def _bare_tree(hf: nn.Module) -> Iterator[nn.Module]:
    """Yield the HF modules that run when every bridge wrapper is swapped out (see :func:`bare_modules`)."""
    yield hf
    for _, child in hf.named_children():
        yield from _bare_tree(unwrap(child))


def bridge_hooks_active(hf: nn.Module) -> bool:
    """Return whether a hook sits on a TransformerBridge module, so the bridge must run as built.

    The one rule for every bare-module fast path (:func:`bare_modules`; probe features use it too).
    Hooks on the HF modules themselves (ours: :func:`activation_hooks`, steering, capture hooks)
    keep firing without the wrappers and do not count; a hook on a HookPoint or any other bridge
    component does, unless TransformerLens installed it itself (its permanent alias wiring).
    HookPoint hooks are read through TL's public ``fwd_hooks``/``bwd_hooks`` handles; raw torch
    hooks through ``nn.Module``'s hook dicts, for which torch has no public accessor.
    """
    from transformer_lens.hook_points import HookPoint

    bare = {id(m) for m in _bare_tree(hf)}
    for mod in hf.modules():
        if id(mod) in bare:
            continue
        if isinstance(mod, HookPoint) and any(not _tl_own(h.user_hook) for h in (*mod.fwd_hooks, *mod.bwd_hooks)):
            return True
        if any(not _tl_own(fn) for fn in (*mod._forward_hooks.values(), *mod._forward_pre_hooks.values())):
            return True
    return False


@contextlib.contextmanager
def bare_modules(hf: nn.Module) -> Iterator[bool]:
    """Temporarily put the wrapped HF modules back in place of the TransformerBridge components.

    The bridge's wrappers cost ~2x per forward on small models; decoding and features only need
    the HF numerics and our own torch hooks (which sit on the unwrapped modules). Skipped, so that
    they keep firing, whenever :func:`bridge_hooks_active`. Yields whether the wrappers were swapped.
    """
    if bridge_hooks_active(hf):
        yield False
        return
    swaps: list[tuple[nn.Module, str, nn.Module]] = []

    def visit(mod: nn.Module) -> None:
        for name, child in list(mod.named_children()):
            inner = unwrap(child)
            if inner is not child:
                swaps.append((mod, name, child))
                mod.add_module(name, inner)
            visit(inner)

    try:
        visit(hf)
        yield bool(swaps)
    finally:
        for mod, name, child in reversed(swaps):
            mod.add_module(name, child)


def _accepts(hf: nn.Module, name: str) -> bool:
    return name in inspect.signature(hf.forward).parameters


def _accepts_position_ids(hf: nn.Module) -> bool:
    # Families with learned/rotary positions take position_ids; ALiBi ones derive them from the mask.
    return "position_ids" in inspect.signature(hf.forward).parameters


@torch.no_grad()
def greedy_decode(model: Any, prompt_ids: Sequence[Sequence[int]], n_steps: int, *, batch_size: int = 16,
                  on_step: Callable[[int, Tensor], None] | None = None,
                  on_batch: Callable[[list[int]], None] | None = None,
                  progress: bool = False, desc: str = "decoding") -> Int[Tensor, "n_prompts n_steps"]:
    """Return the ``n_steps`` greedy tokens of every prompt, decoded with the KV cache.

    Prompts are sorted by length and batched with left padding; ``on_batch(indices)`` is called
    before each batch (indices into ``prompt_ids``) and ``on_step(step, _)`` after each forward.
    """
    if n_steps < 1:
        raise ValueError(f"n_new_tokens must be >= 1, got {n_steps}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    hf = hf_model_of(model)
    require_generation(get_adapter(hf).spec, "greedy decoding")
    device = next(hf.parameters()).device
    pad_id = getattr(hf.config, "pad_token_id", None)
    pad_id = 0 if pad_id is None else int(pad_id)
    use_pos = _accepts_position_ids(hf)
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
    out = torch.empty(len(prompt_ids), n_steps, dtype=torch.long)
    batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    it: Any = batches
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(batches, desc=desc, leave=False, unit="batch")
    with bare_modules(hf):
        _decode_batches(hf, prompt_ids, it, n_steps, out, device, pad_id, use_pos, on_step, on_batch)
    return out


def _decode_batches(hf: nn.Module, prompt_ids: Sequence[Sequence[int]], batches: Any, n_steps: int,
                    out: Int[Tensor, "n_prompts n_steps"],
                    device: torch.device, pad_id: int, use_pos: bool,
                    on_step: Callable[[int, Tensor], None] | None,
                    on_batch: Callable[[list[int]], None] | None) -> None:
    for idx in batches:
        if on_batch is not None:
            on_batch(idx)
        seqs = [list(prompt_ids[i]) for i in idx]
        width = max(len(s) for s in seqs)
        ids = torch.tensor([[pad_id] * (width - len(s)) + s for s in seqs], device=device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        kwargs: dict[str, Any] = {"attention_mask": mask, "use_cache": True}
        if use_pos:
            kwargs["position_ids"] = pos
        if _accepts(hf, "logits_to_keep"):  # only the last position's logits are read (as HF generate does)
            kwargs["logits_to_keep"] = 1
        res = hf(input_ids=ids, **kwargs)
        past = checked_cache(res.past_key_values, width)
        for step in range(n_steps):
            nxt = res.logits[:, -1].argmax(-1)
            out[idx, step] = nxt.cpu()
            if on_step is not None:
                on_step(step, nxt)
            if step == n_steps - 1:
                break
            mask = torch.cat([mask, mask.new_ones(len(idx), 1)], dim=1)
            pos = pos[:, -1:] + 1
            kwargs = {"attention_mask": mask, "use_cache": True, "past_key_values": past}
            if use_pos:
                kwargs["position_ids"] = pos
            res = hf(input_ids=nxt[:, None], **kwargs)
            past = checked_cache(res.past_key_values, mask.shape[1])


@torch.no_grad()
def collect_generation_activations(
    model: Any, prompts: list[str], neurons: list[Neuron], *, n_new_tokens: int = 20, batch_size: int = 16,
    return_tokens: bool = False, progress: bool = False,
) -> Float[Tensor, "n_prompts n_steps n_neurons"] | tuple[Float[Tensor, "n_prompts n_steps n_neurons"],
                                                           Int[Tensor, "n_prompts n_steps"]]:
    """Return each neuron's activation at the last position of each greedy step (fp32, CPU).

    Step 0 is the last prompt token, step t the t-th generated token (see the module doc). With
    ``return_tokens`` also return the greedy token ids ``[n_prompts, n_new_tokens]``. ``model``
    may be a bridge or a :class:`~interp.model.loading.ModelView`; each model follows its own
    trajectory.
    """
    validate_prompts(prompts)
    with activate(model) as m:
        require_generation(get_adapter(m).spec, "the activation filter / key activations over greedy steps")
        neurons = validate_neurons(m, neurons)
        ids = encode_prompts(m, prompts, max_length=generation_budget(m, n_new_tokens))
        groups = group_by_layer(neurons)
        acts = torch.zeros(len(prompts), n_new_tokens, len(neurons), dtype=torch.float32)
        state: dict[str, Any] = {"idx": None, "step": 0}
        cols = {l: torch.tensor([u for _, u in g]) for l, g in groups.items()}
        slots = {l: torch.tensor([j for j, _ in g]) for l, g in groups.items()}

        def grab(layer: int, act: Tensor) -> None:
            # Only the last position and the selected columns leave the device.
            sel = act[:, -1, cols[layer].to(act.device)].float().cpu()
            rows = torch.tensor(state["idx"])
            acts[rows[:, None], state["step"], slots[layer][None, :]] = sel
            return None

        def on_batch(idx: list[int]) -> None:
            state["idx"], state["step"] = idx, 0

        def on_step(step: int, _: Tensor) -> None:
            state["step"] = step + 1

        with activation_hooks(m, {l: grab for l in groups}):
            tokens = greedy_decode(m, ids, n_new_tokens, batch_size=batch_size, on_step=on_step,
                                   on_batch=on_batch, progress=progress, desc="activations")
    return (acts, tokens) if return_tokens else acts


@torch.no_grad()
def collect_prompt_activations(
    model: Any, prompts: list[str], neurons: list[Neuron], *, batch_size: int = 16, progress: bool = False,
) -> Float[Tensor, "n_prompts 1 n_neurons"]:
    """Return each neuron's activation averaged over the prompt's own tokens (one forward, no decoding).

    The prompt-position counterpart of :func:`collect_generation_activations`, for every family
    and the only one for encoders: a mask-aware mean over all real tokens of the prompt (specials
    included, as :func:`encode_prompts` builds them). Shape ``[n_prompts, 1, n_neurons]`` so that
    callers averaging over (prompts, steps) treat both alike. Right padding; encoders and decoders
    see each prompt exactly as alone (causal models never attend to right padding).
    """
    validate_prompts(prompts)
    with activate(model) as m:
        neurons = validate_neurons(m, neurons)
        ids = encode_prompts(m, prompts)
        groups = group_by_layer(neurons)
        cols = {l: torch.tensor([u for _, u in g]) for l, g in groups.items()}
        slots = {l: torch.tensor([j for j, _ in g]) for l, g in groups.items()}
        acts = torch.zeros(len(prompts), 1, len(neurons), dtype=torch.float32)
        hf = hf_model_of(m)
        device = next(hf.parameters()).device
        pad_id = getattr(hf.config, "pad_token_id", None)
        pad_id = 0 if pad_id is None else int(pad_id)
        state: dict[str, Any] = {}

        def grab(layer: int, act: Tensor) -> None:
            mask = state["mask"].to(act.device, torch.float32)[:, :, None]
            sel = act[:, :, cols[layer].to(act.device)].float()
            mean = ((sel * mask).sum(1) / mask.sum(1)).cpu()
            acts[state["rows"][:, None], 0, slots[layer][None, :]] = mean
            return None

        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        batches = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
        it: Any = batches
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(batches, desc="prompt activations", leave=False)
        encoder = get_adapter(hf).spec.is_encoder
        with activation_hooks(m, {l: grab for l in groups}), bare_modules(hf):
            for rows in it:
                width = max(len(ids[i]) for i in rows)
                x = torch.tensor([ids[i] + [pad_id] * (width - len(ids[i])) for i in rows], device=device)
                mask = torch.tensor([[1] * len(ids[i]) + [0] * (width - len(ids[i])) for i in rows], device=device)
                state["rows"], state["mask"] = torch.tensor(rows), mask
                if encoder:  # the encoder alone: its MLM head is never read
                    hf.base_model(input_ids=x, attention_mask=mask)
                else:
                    hf(input_ids=x, attention_mask=mask, use_cache=False)
    return acts


__all__ = ["collect_generation_activations", "collect_prompt_activations", "greedy_decode", "encode_prompts", "generation_budget", "activation_hooks",
           "bare_modules", "bridge_hooks_active", "validate_neurons", "as_neuron_list", "validate_prompts", "tokenizer_of", "group_by_layer", "TokenizerMissingError"]
