"""The embedded default model: a small multilingual GPT-2 trained offline, deterministically.

No pretrained LM can be downloaded where the pipeline runs, so ``--model default`` means a
model this module trains from the data root. It reads top to bottom like nanoGPT:

1. :func:`build_corpus` – a seeded, sorted, documented mix of the offline data sets, with every
   evaluation prompt removed (by RTP-LX Index in every language and by normalised text);
2. :func:`train_tokenizer` – a byte-level BPE trained with ``tokenizers``;
3. :func:`make_model` – a ``GPT2LMHeadModel`` (so the mGPT code path of the adapter is exercised);
4. :func:`train` – one readable loop: AdamW, warmup + cosine, bf16 autocast, atomic checkpoints,
   a token budget (deterministic) and a time budget (a recorded safety cap).

:func:`build_default_model` runs the four stages into a ``save_pretrained`` directory with a
manifest and a training curve; :func:`default_model_dir` caches it under
``cache_dir("default-model")/<recipe>-<recipe hash>-<data tag>``. Recipes are named YAML files
(``interp/recipes``: ``standard``, ``smoke``); ``$XDETOX_DEFAULT_PRESET`` picks the recipe that
``load_model("default")`` builds (tests and CI set it to ``smoke``; unset: ``standard``).

This is a small offline model for exercising and sanity-checking the pipeline, not a
replication of mGPT: its figures are not the paper's.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from jaxtyping import Int
from torch import Tensor

from interp.artifacts import load_tensors, read_json, save_tensors, stable_hash, write_json, write_manifest
from interp.configio import ConfigError, config_from_dict, preset_file, preset_names, read_config_file
from interp.languages import LANGUAGES
from interp.paths import cache_dir

log = logging.getLogger(__name__)

#: Bump when the builder's behaviour changes, so cached models are rebuilt.
BUILDER_VERSION = 1
PRESET_ENV = "XDETOX_DEFAULT_PRESET"
EOS = "<|endoftext|>"
PAD = "<pad>"
CHECKPOINT_NAME = "checkpoint.safetensors"
CURVE_NAME = "training_curve.json"


# ============================================================================ recipe
@dataclass(frozen=True)
class DefaultModelRecipe:
    """Everything that determines the default model; its hash keys the cache."""

    # -- corpus mix
    languages: tuple[str, ...] = field(default=LANGUAGES, metadata={"help": "languages taken from RTP-LX and gettext"})
    rtplx_repeat_en: int = field(default=2, metadata={"help": "times each English RTP-LX training prompt appears"})
    rtplx_repeat_other: int = field(default=3, metadata={
        "help": "times each non-English RTP-LX training prompt appears (non-English toxic text is scarce)"})
    paradetox_repeat: int = field(default=2, metadata={"help": "times each ParaDetox toxic sentence appears"})
    paradetox_neutrals: bool = field(default=True, metadata={"help": "also include ParaDetox neutral paraphrases"})
    davidson_repeat: int = field(default=2, metadata={"help": "times each Davidson tweet appears (0: none)"})
    gettext_per_language: int = field(default=50, metadata={
        "help": "gettext strings per language (keep small: command-line help text invites degeneration)"})
    max_docs: int = field(default=0, metadata={"help": "seeded cap on corpus documents after mixing (0: no cap)"})
    val_fraction: float = field(default=0.02, metadata={"help": "fraction of corpus documents held out for val loss"})
    # -- tokenizer
    vocab_size: int = field(default=8192, metadata={"help": "byte-level BPE vocabulary size (incl. 2 special tokens)"})
    # -- model
    n_layer: int = field(default=4, metadata={"help": "transformer blocks"})
    n_head: int = field(default=4, metadata={"help": "attention heads"})
    d_model: int = field(default=256, metadata={"help": "residual width"})
    d_mlp: int = field(default=1024, metadata={"help": "MLP width (number of neurons per layer)"})
    ctx: int = field(default=128, metadata={"help": "training context length in tokens"})
    # -- optimisation
    batch_size: int = field(default=16, metadata={"help": "sequences per step"})
    lr_peak: float = field(default=2.5e-3, metadata={"help": "peak learning rate (after warmup)"})
    lr_min: float = field(default=1e-4, metadata={"help": "final learning rate of the cosine decay"})
    warmup_frac: float = field(default=0.05, metadata={"help": "fraction of steps spent in linear warmup"})
    weight_decay: float = field(default=0.1, metadata={"help": "AdamW weight decay on matrices"})
    grad_clip: float = field(default=1.0, metadata={"help": "max global grad norm"})
    # -- budgets
    token_budget: int = field(default=2_000_000, metadata={
        "help": "training tokens (steps = budget // (batch_size*ctx)); this decides the result"})
    time_budget_s: float = field(default=3600.0, metadata={
        "help": "safety cap on training wall time; a run that hits it is marked so in the manifest"})
    eval_every: int = field(default=100, metadata={"help": "steps between val-loss evaluations"})
    checkpoint_every_s: float = field(default=60.0, metadata={"help": "seconds between checkpoints"})
    heldout_per_language: int = field(default=100, metadata={
        "help": "RTP-LX evaluation prompts per language (seeded draw) for the held-out LM loss"})
    num_threads: int = field(default=1, metadata={
        "help": "CPU threads for training (0: torch's default); 1 avoids OpenMP spin-wait stalls on a busy "
                "machine and is much faster for tiny models"})
    seed: int = field(default=0, metadata={"help": "seed of corpus shuffling, init and batch order"})

    def __post_init__(self) -> None:
        if self.d_model % self.n_head:
            raise ValueError(f"recipe: d_model {self.d_model} is not divisible by n_head {self.n_head}")
        if self.vocab_size < 300:
            raise ValueError(f"recipe: vocab_size {self.vocab_size} < 300 (byte alphabet + specials)")
        if not 0 <= self.val_fraction < 0.5:
            raise ValueError(f"recipe: val_fraction {self.val_fraction} must be in [0, 0.5)")

    @property
    def steps(self) -> int:
        """Return the number of optimiser steps the token budget buys."""
        return max(1, self.token_budget // (self.batch_size * self.ctx))


RECIPE_DIR = Path(__file__).parent / "recipes"
#: The recipe of ``load_model("default")`` unless ``$XDETOX_DEFAULT_PRESET`` names another.
STANDARD_RECIPE = "standard"
#: Former recipe names: "default" named the model, a recipe and a config value at once (issue 16).
RENAMED_RECIPES = {"default": STANDARD_RECIPE}
#: Cache folder prefix of a recipe built under its former name, so that build stays valid.
_CACHE_NAMES = {STANDARD_RECIPE: "default"}


def recipe_hash(recipe: DefaultModelRecipe) -> str:
    """Return the cache key of ``recipe`` (includes the builder version)."""
    return stable_hash({"recipe": dataclasses.asdict(recipe), "builder": BUILDER_VERSION}, n=12)


def recipe_names() -> list[str]:
    """Return the names of the shipped recipes (``interp/recipes/NAME.yaml``)."""
    return preset_names(RECIPE_DIR)


def get_recipe(preset: str) -> DefaultModelRecipe:
    """Return the named recipe (``interp/recipes/NAME.yaml``), or an error listing the recipes."""
    path = preset_file(RECIPE_DIR, preset, what="default-model recipe", renamed=RENAMED_RECIPES)
    try:
        return config_from_dict(DefaultModelRecipe, read_config_file(path))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e


#: {name: recipe} of the shipped recipes, read from their YAML files.
RECIPES: dict[str, DefaultModelRecipe] = {name: get_recipe(name) for name in recipe_names()}


# ============================================================================ 1. corpus
@dataclass
class Corpus:
    """Training and validation documents plus per-source counts (no text in the counts)."""

    train: list[str]
    val: list[str]
    stats: dict[str, Any]


def build_corpus(recipe: DefaultModelRecipe, data_root: str | os.PathLike[str] | None = None) -> Corpus:
    """Return the training corpus of ``recipe``: documents from the offline data, eval prompts removed.

    Recipe (all sources read through ``interp.data``; every list is sorted before the seeded
    shuffle, so the result depends only on the data and the recipe):

    - RTP-LX prompts of the *train* split (``rtplx_split(..., "train")``), in every recipe
      language; English ``rtplx_repeat_en`` times, other languages ``rtplx_repeat_other`` times;
    - ParaDetox toxic sentences (``paradetox_repeat`` times) and, optionally, their neutral
      paraphrases;
    - Davidson tweets (``davidson_repeat`` times);
    - ``gettext_per_language`` gettext strings per language (English = msgids),
      drawn with the recipe seed.

    Hold-out: any document whose RTP-LX Index is an evaluation index, or whose normalised text
    is one of ``interp.data.heldout_texts`` (the RTP-LX eval split and translated-200 in every
    language), is dropped. ``val_fraction`` of the remaining unique documents form the val set.
    """
    from interp import data
    from interp.paths import data_root as resolve_root

    root = resolve_root(data_root)
    heldout = data.heldout_texts(root)  # already normalised with data.normalize_text
    rng = random.Random(recipe.seed)
    stats: dict[str, Any] = {"sources": {}, "dropped_heldout": 0}
    docs: list[tuple[str, str]] = []  # (source, text)

    def add(source: str, texts: list[str], repeat: int) -> None:
        kept = []
        for t in texts:
            t = t.strip()
            if not t:
                continue
            if data.normalize_text(t) in heldout:
                stats["dropped_heldout"] += 1
                continue
            kept.append(t)
        kept = sorted(set(kept))
        stats["sources"][source] = {"unique": len(kept), "repeat": repeat}
        docs.extend((source, t) for t in kept for _ in range(repeat))

    prompts = data.load_rtplx(root, languages=list(recipe.languages))
    train_prompts = data.rtplx_split(prompts, "train", root=root)
    stats["rtplx_eval_prompts_dropped"] = len(prompts) - len(train_prompts)
    for lang in recipe.languages:
        texts = [p.text for p in train_prompts if p.lang == lang]
        add(f"rtplx:{lang}", texts, recipe.rtplx_repeat_en if lang == "en" else recipe.rtplx_repeat_other)
    if recipe.paradetox_repeat:
        rows = data.load_paradetox(root)
        add("paradetox:toxic", [r.toxic for r in rows], recipe.paradetox_repeat)
        if recipe.paradetox_neutrals:
            add("paradetox:neutral", [n for r in rows for n in r.neutrals], 1)
    if recipe.davidson_repeat:
        add("davidson", [r.text for r in data.load_davidson(root)], recipe.davidson_repeat)
    if recipe.gettext_per_language:
        # Parallel lists (line i is the same string in every language): one seeded draw of
        # line numbers per language, so English sources of the drawn lines come along.
        parallel = data.gettext_parallel(list(recipe.languages))
        for lang in sorted(parallel):
            lines = parallel[lang]
            chosen = random.Random(f"{recipe.seed}:gettext:{lang}").sample(
                range(len(lines)), min(recipe.gettext_per_language, len(lines)))
            add(f"gettext:{lang}", [lines[i] for i in sorted(chosen)], 1)

    unique = sorted(set(t for _, t in docs))
    rng.shuffle(unique)
    n_val = int(round(len(unique) * recipe.val_fraction))
    val = sorted(unique[:n_val])
    val_set = set(val)
    train_docs = sorted(t for _, t in docs if t not in val_set)
    rng.shuffle(train_docs)
    if recipe.max_docs and len(train_docs) > recipe.max_docs:
        train_docs = train_docs[: recipe.max_docs]
        val = val[: max(1, int(recipe.max_docs * recipe.val_fraction))]
    stats.update(n_train=len(train_docs), n_val=len(val), train_chars=sum(map(len, train_docs)))
    return Corpus(train=train_docs, val=val, stats=stats)


# ============================================================================ 2. tokenizer
def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """Return a byte-level BPE ``PreTrainedTokenizerFast`` (bos = eos = ``<|endoftext|>``, pad ``<pad>``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, PAD], min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=PAD,
                                   unk_token=None, model_max_length=1024)


def tokenize_stream(tokenizer: Any, docs: list[str]) -> Int[Tensor, "n_tokens"]:
    """Return all documents tokenised and joined into one stream, each followed by EOS."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    for enc in tokenizer(docs, add_special_tokens=False)["input_ids"]:
        ids.extend(enc)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


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


def _autocast(device: str) -> contextlib.AbstractContextManager[Any]:
    dev = device.split(":")[0]
    if dev == "cuda" and not torch.cuda.is_bf16_supported():
        return contextlib.nullcontext()
    return torch.autocast(dev, dtype=torch.bfloat16)


@torch.no_grad()
def eval_loss(model: Any, blocks: Int[Tensor, "n ctx_plus_1"], *, device: str, batch_size: int = 32) -> float:
    """Return the mean next-token loss (nats) of ``model`` over ``blocks``."""
    model.eval()
    total, count = 0.0, 0
    for i in range(0, blocks.shape[0], batch_size):
        b = blocks[i:i + batch_size].to(device)
        with _autocast(device):
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


def train(model: Any, train_blocks: Int[Tensor, "n ctx_plus_1"], val_blocks: Int[Tensor, "m ctx_plus_1"],
          recipe: DefaultModelRecipe, *, checkpoint: Path | None = None, resume: bool = True,
          device: str | None = None, progress: bool = True, max_steps: int | None = None) -> TrainResult:
    """Return the result of training ``model`` in place for ``recipe.steps`` steps.

    The run is a pure function of (model init, blocks, recipe): batches depend only on the
    step, so a resumed run ends with the same weights as an uninterrupted one. ``max_steps``
    stops early (as an interruption would) after writing a checkpoint.
    """
    from tqdm.auto import tqdm

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
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
        with _autocast(device):
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
                          "val_loss": eval_loss(model, val_blocks, device=device) if val_blocks.numel() else None,
                          "elapsed_s": round(elapsed_before + time.monotonic() - t0, 2)})
        if checkpoint is not None and (time.monotonic() - last_ckpt > recipe.checkpoint_every_s or step == stop):
            _save_checkpoint(checkpoint, model, opt, step, curve, elapsed_before + time.monotonic() - t0)
            last_ckpt = time.monotonic()
    bar.close()
    run_s = time.monotonic() - t0
    model.eval()
    return TrainResult(steps_done=step, stopped_by=stopped_by, curve=curve, elapsed_s=elapsed_before + run_s,
                       tokens_per_s=(step - start_step) * tokens_per_step / max(run_s, 1e-9))


# ============================================================================ held-out loss
def lm_loss_by_language(model: Any, tokenizer: Any, texts_by_lang: dict[str, list[str]], *,
                        batch_size: int = 32) -> dict[str, float]:
    """Return {lang: mean next-token loss in nats} over each language's texts (:func:`interp.lm_loss.lm_loss`:
    each text after the start token, EOS for this tokenizer, at most 256 tokens)."""
    from interp.lm_loss import lm_loss

    return {lang: lm_loss(model, tokenizer, texts_by_lang[lang], batch_size=batch_size, max_length=256)
            for lang in sorted(texts_by_lang)}


def heldout_texts_by_language(recipe: DefaultModelRecipe, data_root: str | os.PathLike[str] | None = None, *,
                              per_language: int | None = None, seed: int = 0) -> dict[str, list[str]]:
    """Return {lang: RTP-LX evaluation-split prompt texts}: never trained on, used for held-out loss.

    ``per_language`` draws that many per language (seeded); None/0 keeps all.
    """
    from interp import data
    from interp.paths import data_root as resolve_root

    prompts = data.rtplx_split(data.load_rtplx(resolve_root(data_root), languages=list(recipe.languages)), "eval")
    out: dict[str, list[str]] = {}
    for p in sorted(prompts, key=lambda p: p.id):
        out.setdefault(p.lang, []).append(p.text)
    if per_language:
        out = {lang: random.Random(f"{seed}:heldout:{lang}").sample(texts, min(per_language, len(texts)))
               for lang, texts in out.items()}
    return out


# ============================================================================ build + cache
def build_default_model(recipe: DefaultModelRecipe, data_root: str | os.PathLike[str] | None = None,
                        out_dir: str | os.PathLike[str] | None = None, *, resume: bool = True,
                        progress: bool = True, device: str | None = None, max_steps: int | None = None) -> Path:
    """Return ``out_dir`` after building the default model of ``recipe`` into it.

    Writes an HF ``save_pretrained`` directory (model + tokenizer), ``manifest.json`` (recipe,
    hash, corpus counts, stop reason, throughput, held-out loss per language) and
    ``training_curve.json``. A checkpoint under ``out_dir/_train`` makes an interrupted build
    resume; ``resume=False`` starts over. ``max_steps`` simulates an interruption (for tests).
    """
    out = Path(out_dir) if out_dir is not None else cache_dir("default-model") / f"custom-{recipe_hash(recipe)}"
    with _threads(recipe.num_threads):
        return _build(recipe, data_root, out, resume=resume, progress=progress, device=device, max_steps=max_steps)


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """Temporarily set torch's CPU thread count (0 leaves it alone)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _build(recipe: DefaultModelRecipe, data_root: str | os.PathLike[str] | None, out: Path, *, resume: bool,
           progress: bool, device: str | None, max_steps: int | None) -> Path:
    work = out / "_train"
    if not resume and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    corpus = build_corpus(recipe, data_root)
    tok_dir = work / "tokenizer"
    if resume and (tok_dir / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir))
    else:
        tokenizer = train_tokenizer(corpus.train, recipe.vocab_size)
        tokenizer.save_pretrained(str(tok_dir))
    t_tok = time.monotonic() - t_start
    train_blocks = to_blocks(tokenize_stream(tokenizer, corpus.train), recipe.ctx)
    val_stream = tokenize_stream(tokenizer, corpus.val)
    val_blocks = to_blocks(val_stream, recipe.ctx) if val_stream.numel() > recipe.ctx + 1 else torch.empty(0, recipe.ctx + 1, dtype=torch.long)
    model = make_model(recipe, tokenizer)
    result = train(model, train_blocks, val_blocks, recipe, checkpoint=work / CHECKPOINT_NAME, resume=resume,
                   device=device, progress=progress, max_steps=max_steps)
    if result.stopped_by == "max_steps":
        return out
    model.to("cpu")
    heldout = lm_loss_by_language(model, tokenizer, heldout_texts_by_language(
        recipe, data_root, per_language=recipe.heldout_per_language, seed=recipe.seed))
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    write_json(out / CURVE_NAME, result.curve)
    write_json(out / "corpus_stats.json", corpus.stats)
    write_manifest(
        out, kind="default-model", config=recipe, seed=recipe.seed, model_id=str(out),
        extra={"recipe_hash": recipe_hash(recipe), "builder_version": BUILDER_VERSION,
               "stopped_by": result.stopped_by, "steps": result.steps_done, "planned_steps": recipe.steps,
               "tokens_trained": result.steps_done * recipe.batch_size * recipe.ctx,
               "train_tokens_available": int(train_blocks.numel()), "epochs": round(
                   result.steps_done * recipe.batch_size / max(1, train_blocks.shape[0]), 3),
               "train_seconds": round(result.elapsed_s, 1), "build_seconds": round(time.monotonic() - t_start, 1),
               "corpus_and_tokenizer_seconds": round(t_tok, 1), "tokens_per_s": round(result.tokens_per_s, 1),
               "torch_threads": torch.get_num_threads(),
               "final_val_loss": result.curve[-1]["val_loss"] if result.curve else None,
               "heldout_loss_by_language": heldout, "corpus": corpus.stats,
               "heldout_per_language": recipe.heldout_per_language, "files": _weight_files(out),
               "complete": True})
    shutil.rmtree(work, ignore_errors=True)
    return out


def is_built(directory: Path) -> bool:
    """Return whether ``directory`` holds a complete, undamaged default-model build.

    A damaged build (a weight file truncated or changed since the manifest recorded its size and
    sha256, or an unreadable manifest) is derived data: it is reported and counts as not built,
    so :func:`default_model_dir` rebuilds it.
    """
    from interp.artifacts import InputError

    m = directory / "manifest.json"
    if not (m.is_file() and (directory / "config.json").is_file()):
        return False
    try:
        manifest = read_json(m)
        if not isinstance(manifest, dict) or not manifest.get("complete"):
            return False
        problem = _damage(directory, manifest)
    except InputError as e:
        problem = str(e)
    if problem:
        log.warning("default-model cache %s is damaged (%s); rebuilding it", directory, problem)
        (directory / "manifest.json").unlink(missing_ok=True)
        return False
    return True


def _weight_files(directory: Path) -> dict[str, dict[str, Any]]:
    """Return {file: {size, sha256}} for the build's weight files (recorded in the manifest)."""
    from interp.artifacts import file_sha256

    return {p.name: {"size": p.stat().st_size, "sha256": file_sha256(p, n=None)}
            for p in sorted(directory.glob("*.safetensors"))}


def _damage(directory: Path, manifest: dict[str, Any]) -> str | None:
    """Return what is wrong with a finished build's weights, or None."""
    from interp.artifacts import CorruptFileError, check_safetensors, file_sha256

    recorded = manifest.get("files")
    for p in sorted(directory.glob("*.safetensors")):
        try:
            check_safetensors(p)
        except CorruptFileError as e:
            return str(e)
    if isinstance(recorded, dict):
        for name, info in recorded.items():
            p = directory / name
            if not p.is_file():
                return f"{p} is missing"
            if p.stat().st_size != info.get("size") or file_sha256(p, n=None) != info.get("sha256"):
                return f"{p} differs from the size/sha256 recorded in its manifest"
    elif not any(directory.glob("*.safetensors")):
        return "no weight file"
    return None


@contextlib.contextmanager
def _build_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock so two processes never build the same directory at once."""
    import fcntl

    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f".{directory.name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def data_tag(data_root: str | os.PathLike[str] | None = None) -> str:
    """Return a fingerprint of what the corpus is built from: the data root's content and the gettext catalogs."""
    from interp.artifacts import stable_hash, tree_fingerprint
    from interp.paths import data_root as resolve_root

    loc = Path("/usr/share/locale")  # interp.data.gettext_parallel's default folder
    return stable_hash({"data": tree_fingerprint(resolve_root(data_root)),
                        "gettext": tree_fingerprint(loc, content=False) if loc.is_dir() else None}, n=12)


def named_recipe(preset: str | None = None) -> tuple[str, DefaultModelRecipe]:
    """Return (name, recipe) of ``preset``; ``None`` is the recipe ``load_model("default")`` builds:
    ``$XDETOX_DEFAULT_PRESET`` when set, else ``standard``."""
    if preset is not None:
        return preset, get_recipe(preset)
    name = os.environ.get(PRESET_ENV) or STANDARD_RECIPE
    try:
        return name, get_recipe(name)
    except ConfigError as e:
        raise ConfigError(f"${PRESET_ENV}={name}: {e}") from e


def resolve_preset(preset: str | None = None, data_root: str | os.PathLike[str] | None = None
                   ) -> tuple[str, DefaultModelRecipe, Path]:
    """Return (recipe name, recipe, cache directory); ``None`` is ``$XDETOX_DEFAULT_PRESET``, else ``standard``.

    The directory is keyed by the recipe and by the data it is trained from (:func:`data_tag`), so a
    model built from one data root is never reused for another.
    """
    preset, recipe = named_recipe(preset)
    name = _CACHE_NAMES.get(preset, preset)
    return preset, recipe, cache_dir("default-model") / f"{name}-{recipe_hash(recipe)}-{data_tag(data_root)}"


def default_model_dir(preset: str | None = None, data_root: str | os.PathLike[str] | None = None, *,
                      build: bool = True, progress: bool = True) -> Path:
    """Return the cached ``save_pretrained`` directory of recipe ``preset``, building it on first use.

    ``preset=None`` (what ``load_model("default")`` uses) is ``$XDETOX_DEFAULT_PRESET`` when set (tests
    and CI use ``smoke``), else ``standard``. With ``build=False`` a missing model is an error instead of a build.
    """
    preset, recipe, directory = resolve_preset(preset, data_root)
    if is_built(directory):
        return directory
    if not build:
        raise FileNotFoundError(f"default model {preset!r} is not built at {directory}; "
                                f"run `xdetox model build-default --preset {preset}`")
    with _build_lock(directory):
        if not is_built(directory):
            build_default_model(recipe, data_root, directory, progress=progress)
    return directory


__all__ = [
    "DefaultModelRecipe", "RECIPES", "Corpus", "TrainResult", "build_corpus", "train_tokenizer", "tokenize_stream",
    "make_model", "train", "lr_at", "batch_at", "to_blocks", "eval_loss", "lm_loss_by_language",
    "heldout_texts_by_language", "build_default_model", "default_model_dir", "recipe_hash", "get_recipe",
    "is_built", "resolve_preset", "PRESET_ENV", "recipe_names", "named_recipe", "STANDARD_RECIPE",
]
