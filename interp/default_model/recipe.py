"""The embedded default model: a small multilingual GPT-2 trained offline, deterministically. (recipe)."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Literal
from pathlib import Path

from interp.core.artifacts import stable_hash
from interp.core.configio import ConfigError, config_from_dict, preset_file, preset_names, read_config_file
from interp.data.languages import LANGUAGES

#: Bump when the builder's behaviour changes, so cached models are rebuilt.
BUILDER_VERSION = 1


PRESET_ENV = "XDETOX_DEFAULT_PRESET"


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
    precision: Literal["auto", "bf16", "fp32"] = field(default="auto", metadata={
        "help": "bf16 autocast or fp32 training. auto: bf16 where the hardware computes it natively (a bf16 GPU, "
                "or a CPU with AVX512-BF16 or AMX), else fp32: emulated bf16 is ~11x slower than fp32 on an AVX2-only "
                "CPU (measured). bf16 on a GPU without bf16 is an error. The precision used is part of the cache key"})
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


def native_bf16(device: str) -> bool:
    """Return whether ``device`` computes bf16 natively (a bf16 GPU; a CPU with AVX512-BF16 or AMX tiles)."""
    import torch

    if device.split(":")[0] == "cuda":
        if not torch.cuda.is_available():
            return False
        with torch.cuda.device(torch.device(device)):  # that GPU, not the current one
            return torch.cuda.is_bf16_supported()
    cpu = torch.cpu  # private probes (torch >= 2.1); tests/test_default_model.py fails if they vanish
    return any(bool(getattr(cpu, f, lambda: False)()) for f in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))


def training_device() -> str:
    """Return the device the default model trains on: CUDA when available, else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def effective_precision(recipe: DefaultModelRecipe, device: str | None = None) -> str:
    """Return ``"bf16"`` or ``"fp32"``: the recipe's precision, with ``auto`` resolved for ``device``.

    Explicit ``bf16`` on a GPU without bf16 is an error (a CPU emulates it, slowly but correctly).
    """
    device = device or training_device()
    if recipe.precision == "bf16" and device.startswith("cuda") and not native_bf16(device):
        raise ConfigError(f"recipe precision: bf16 on {device}, a GPU without bf16; use precision auto or fp32")
    if recipe.precision != "auto":
        return recipe.precision
    return "bf16" if native_bf16(device) else "fp32"


def recipe_hash(recipe: DefaultModelRecipe, device: str | None = None) -> str:
    """Return the cache key of ``recipe`` (includes the builder version and the precision it trains in).

    Builds from before the ``precision`` field trained with bf16 autocast (emulated on an AVX2
    CPU, same arithmetic), so a bf16 build keeps the hash it always had; an fp32 build gets its
    own. (The one exception: before the field, a CUDA GPU without bf16 trained in fp32 under
    the bf16 hash; such a cached build is rebuilt under its fp32 hash now.)
    """
    fields = dataclasses.asdict(recipe)
    del fields["precision"]
    precision = effective_precision(recipe, device)
    if precision != "bf16":
        fields["precision"] = precision
    return stable_hash({"recipe": fields, "builder": BUILDER_VERSION}, n=12)


def recipe_names() -> list[str]:
    """Return the names of the shipped recipes (``interp/default_model/recipes/NAME.yaml``)."""
    return preset_names(RECIPE_DIR)


def get_recipe(preset: str) -> DefaultModelRecipe:
    """Return the named recipe (``interp/default_model/recipes/NAME.yaml``), or an error listing the recipes."""
    path = preset_file(RECIPE_DIR, preset, what="default-model recipe", renamed=RENAMED_RECIPES)
    try:
        return config_from_dict(DefaultModelRecipe, read_config_file(path))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e


#: {name: recipe} of the shipped recipes, read from their YAML files.
RECIPES: dict[str, DefaultModelRecipe] = {name: get_recipe(name) for name in recipe_names()}


def named_recipe(preset: str | None = None, seed: int | None = None) -> tuple[str, DefaultModelRecipe]:
    """Return (name, recipe) of ``preset``; ``None`` is the recipe ``load_model("default")`` builds:
    ``$XDETOX_DEFAULT_PRESET`` when set, else ``standard``. ``seed`` replaces the recipe's seed (the
    run-to-run spread of one recipe); the recipe hash, and so the cache folder, then differ."""
    if preset is not None:
        name, recipe = preset, get_recipe(preset)
    else:
        name = os.environ.get(PRESET_ENV) or STANDARD_RECIPE
        try:
            recipe = get_recipe(name)
        except ConfigError as e:
            raise ConfigError(f"${PRESET_ENV}={name}: {e}") from e
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"recipe seed must be an integer >= 0, got {seed!r}")
        recipe = dataclasses.replace(recipe, seed=seed)
    return name, recipe
