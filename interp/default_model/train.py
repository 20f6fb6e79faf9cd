"""The embedded default model: a small multilingual GPT-2 trained offline, deterministically. (train)."""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from jaxtyping import Int
from torch import Tensor

from interp.core.artifacts import load_tensors, save_tensors
from interp.default_model.recipe import DefaultModelRecipe, effective_precision, training_device


class HeldoutLoss(Protocol):
    """What the build measures held-out text with: :func:`interp.model.lm_loss.lm_loss`'s signature."""

    def __call__(self, model: Any, tokenizer: Any, texts: list[str], *, batch_size: int,
                 max_length: int) -> float: ...

CURVE_NAME = "training_curve.json"


# ============================================================================ 3. model
def make_model(recipe: DefaultModelRecipe, tokenizer: Any) -> Any:
    """Return a freshly initialised ``GPT2LMHeadModel`` for ``recipe`` (seeded)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=max(recipe.ctx, 256), n_embd=recipe.d_model,
        n_layer=recipe.n_layer, n_head=recipe.n_head, n_inner=recipe.d_mlp,
        # No dropout: a token-budgeted small model underfits, and dropout would add RNG state.
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(recipe.seed)
    model = GPT2LMHeadModel(config)
    model.config._attn_implementation = "eager"
    return model


# ============================================================================ 4. training loop
def lr_at(step: int, recipe: DefaultModelRecipe) -> float:
    """Return the learning rate at ``step``: linear warmup, then cosine from lr_peak to lr_min."""
    total = recipe.steps
    warmup = max(1, int(total * recipe.warmup_frac))
    if step < warmup:
        return recipe.lr_peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return recipe.lr_min + 0.5 * (recipe.lr_peak - recipe.lr_min) * (1 + math.cos(math.pi * progress))


def batch_at(step: int, blocks: Int[Tensor, "n_blocks ctx_plus_1"], recipe: DefaultModelRecipe) -> Int[Tensor, "batch ctx_plus_1"]:
    """Return the batch of ``step``: a function of the step alone, so resuming replays the same data.

    Blocks are visited in a seeded permutation per epoch.
    """
    n = blocks.shape[0]
    per_epoch = max(1, n // recipe.batch_size)
    epoch, i = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(recipe.seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    idx = perm[i * recipe.batch_size:(i + 1) * recipe.batch_size]
    return blocks[idx]


def to_blocks(stream: Int[Tensor, "n_tokens"], ctx: int) -> Int[Tensor, "n_blocks ctx_plus_1"]:
    """Return the stream cut into non-overlapping windows of ``ctx + 1`` tokens (inputs + targets)."""
    n = (stream.numel() - 1) // ctx
    if n < 1:
        raise ValueError(f"corpus too small: {stream.numel()} tokens for context {ctx}")
    return torch.stack([stream[i * ctx: i * ctx + ctx + 1] for i in range(n)])


def _autocast(device: str, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for ``precision`` "bf16" (see :func:`effective_precision`), else plain fp32."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device.split(":")[0], dtype=torch.bfloat16)


@torch.no_grad()
def eval_loss(model: Any, blocks: Int[Tensor, "n ctx_plus_1"], *, device: str, batch_size: int = 32,
              precision: str = "fp32") -> float:
    """Return the mean next-token loss (nats) of ``model`` over ``blocks`` (``precision`` as in training)."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, blocks.shape[0], batch_size):
        b = blocks[i:i + batch_size].to(device)
        with _autocast(device, precision):
            logits = model(input_ids=b[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), b[:, 1:].reshape(-1),
                                                 reduction="sum")
        total += float(loss)
        count += b[:, 1:].numel()
    model.train()
    return total / max(1, count)


def _optimizer(model: Any, recipe: DefaultModelRecipe) -> torch.optim.AdamW:
    decay = [p for n, p in sorted(model.named_parameters()) if p.dim() >= 2]
    no_decay = [p for n, p in sorted(model.named_parameters()) if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=recipe.lr_peak, betas=(0.9, 0.95), eps=1e-8)


def _save_checkpoint(path: Path, model: Any, opt: torch.optim.Optimizer, step: int,
                     curve: list[dict[str, Any]], elapsed_s: float) -> None:
    """Write weights + optimizer state in one safetensors file (atomic: a kill leaves the old one)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    state = opt.state_dict()
    for pid, st in state["state"].items():
        for k, v in st.items():
            tensors[f"opt.{pid}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    groups = [{k: v for k, v in g.items()} for g in state["param_groups"]]
    save_tensors(path, tensors, {"step": step, "param_groups": groups, "curve": curve, "elapsed_s": elapsed_s})


def _load_checkpoint(path: Path, model: Any, opt: torch.optim.Optimizer) -> tuple[int, list[dict[str, Any]], float]:
    """Restore a checkpoint written by :func:`_save_checkpoint`; return (step, curve, elapsed_s)."""
    tensors, meta = load_tensors(path)
    sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    own = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}
    bad = sorted(set(own) ^ set(sd)) + sorted(k for k in own if k in sd and own[k].shape != sd[k].shape)
    if bad:
        raise ValueError(f"{path}: checkpoint does not match the model (first mismatched weight: {bad[0]}); "
                         "it was written for another recipe: delete it to start over")
    model.load_state_dict(sd, strict=False)
    state: dict[int, dict[str, Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    return int(meta["step"]), list(meta["curve"]), float(meta["elapsed_s"])


@dataclass
class TrainResult:
    """What :func:`train` did: steps run, why it stopped, the curve and the throughput."""

    steps_done: int
    stopped_by: str  # "token_budget" | "time_budget" | "max_steps"
    curve: list[dict[str, Any]]
    elapsed_s: float
    tokens_per_s: float
    precision: str = "bf16"  # "bf16" (autocast) or "fp32": effective_precision(recipe, device)


def train(model: Any, train_blocks: Int[Tensor, "n ctx_plus_1"], val_blocks: Int[Tensor, "m ctx_plus_1"],
          recipe: DefaultModelRecipe, *, checkpoint: Path | None = None, resume: bool = True,
          device: str | None = None, progress: bool = True, max_steps: int | None = None) -> TrainResult:
    """Return the result of training ``model`` in place for ``recipe.steps`` steps.

    The run is a pure function of (model init, blocks, recipe): batches depend only on the
    step, so a resumed run ends with the same weights as an uninterrupted one. ``max_steps``
    stops early (as an interruption would) after writing a checkpoint.
    """
    from tqdm.auto import tqdm

    device = device or training_device()
    precision = effective_precision(recipe, device)
    model.to(device).train()
    opt = _optimizer(model, recipe)
    step, curve, elapsed_before = 0, [], 0.0
    if checkpoint is not None and resume and checkpoint.is_file():
        step, curve, elapsed_before = _load_checkpoint(checkpoint, model, opt)
    total = recipe.steps
    stop = total if max_steps is None else min(total, max_steps)
    tokens_per_step = recipe.batch_size * recipe.ctx
    t0 = time.monotonic()
    last_ckpt = t0
    stopped_by = "token_budget" if max_steps is None or max_steps >= total else "max_steps"
    bar = tqdm(total=total, initial=step, desc="default model: train", unit="step", disable=not progress)
    running: float | None = None
    start_step = step
    while step < stop:
        if elapsed_before + time.monotonic() - t0 > recipe.time_budget_s:
            stopped_by = "time_budget"
            break
        lr = lr_at(step, recipe)
        for g in opt.param_groups:
            g["lr"] = lr
        batch = batch_at(step, train_blocks, recipe).to(device)
        with _autocast(device, precision):
            logits = model(input_ids=batch[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        opt.step()
        step += 1
        lv = float(loss.detach())
        running = lv if running is None else 0.9 * running + 0.1 * lv
        bar.update(1)
        bar.set_postfix(loss=f"{running:.3f}", lr=f"{lr:.2e}")
        if step % recipe.eval_every == 0 or step == total:
            curve.append({"step": step, "tokens": step * tokens_per_step, "lr": lr, "train_loss": running,
                          "val_loss": eval_loss(model, val_blocks, device=device, precision=precision) if val_blocks.numel() else None,
                          "elapsed_s": round(elapsed_before + time.monotonic() - t0, 2)})
        if checkpoint is not None and (time.monotonic() - last_ckpt > recipe.checkpoint_every_s or step == stop):
            _save_checkpoint(checkpoint, model, opt, step, curve, elapsed_before + time.monotonic() - t0)
            last_ckpt = time.monotonic()
    bar.close()
    run_s = time.monotonic() - t0
    model.eval()
    return TrainResult(steps_done=step, stopped_by=stopped_by, curve=curve, elapsed_s=elapsed_before + run_s,
                       tokens_per_s=(step - start_step) * tokens_per_step / max(run_s, 1e-9), precision=precision)


# ============================================================================ held-out loss
def lm_loss_by_language(model: Any, tokenizer: Any, texts_by_lang: dict[str, list[str]], *, loss: "HeldoutLoss",
                        batch_size: int = 32) -> dict[str, float]:
    """Return {lang: mean next-token loss in nats} over each language's texts, by ``loss``
    (:func:`interp.model.lm_loss.lm_loss`: each text after the start token, EOS for this tokenizer, at most
    256 tokens). The model layer passes its one LM-loss implementation in, so this layer imports nothing above it."""
    return {lang: loss(model, tokenizer, texts_by_lang[lang], batch_size=batch_size, max_length=256)
            for lang in sorted(texts_by_lang)}
