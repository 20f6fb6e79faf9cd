"""The embedded default model: a small multilingual GPT-2 trained offline, deterministically.

No pretrained LM can be downloaded where the pipeline runs, so ``--model default`` means a
model this module trains from the data root. It reads top to bottom like nanoGPT:

1. :func:`build_corpus` – a seeded, sorted, documented mix of the offline data sets, with every
   evaluation prompt removed (by RTP-LX Index in every language and by normalised text);
2. :func:`train_tokenizer` – a byte-level BPE trained with ``tokenizers``;
3. :func:`make_model` – a ``GPT2LMHeadModel`` (so the mGPT code path of the adapter is exercised);
4. :func:`train` – one readable loop: AdamW, warmup + cosine, bf16 autocast where native (else fp32), atomic checkpoints,
   a token budget (deterministic) and a time budget (a recorded safety cap).

:func:`build_default_model` runs the four stages into a ``save_pretrained`` directory with a
manifest and a training curve; :func:`default_model_dir` caches it under
``cache_dir("default-model")/<recipe>-<recipe hash>-<data tag>``. Recipes are named YAML files
(``interp/default_model/recipes``: ``standard``, ``smoke``); ``$XDETOX_DEFAULT_PRESET`` picks the recipe that
``load_model("default")`` builds (tests and CI set it to ``smoke``; unset: ``standard``).

This is a small offline model for exercising and sanity-checking the pipeline, not a
replication of mGPT: its figures are not the paper's."""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import torch

from interp.core.artifacts import read_json, write_json, write_manifest
from interp.default_model.corpus import build_corpus, heldout_texts_by_language, tokenize_stream, train_tokenizer
from interp.default_model.recipe import _CACHE_NAMES, BUILDER_VERSION, DefaultModelRecipe, named_recipe, recipe_hash
from interp.default_model.train import CURVE_NAME, HeldoutLoss, lm_loss_by_language, make_model, to_blocks, train
from interp.core.paths import cache_dir

log = logging.getLogger(__name__)


CHECKPOINT_NAME = "checkpoint.safetensors"


# ============================================================================ build + cache
def build_default_model(recipe: DefaultModelRecipe, data_root: str | os.PathLike[str] | None = None,
                        out_dir: str | os.PathLike[str] | None = None, *, heldout_loss: HeldoutLoss,
                        resume: bool = True, progress: bool = True, device: str | None = None,
                        max_steps: int | None = None) -> Path:
    """Return ``out_dir`` after building the default model of ``recipe`` into it.

    ``heldout_loss`` measures the held-out text per language: pass :func:`interp.model.lm_loss.lm_loss`
    (the model layer's one LM loss; :func:`interp.model.loading.load_model` ``("default")`` does).

    Writes an HF ``save_pretrained`` directory (model + tokenizer), ``manifest.json`` (recipe,
    hash, corpus counts, stop reason, throughput, held-out loss per language) and
    ``training_curve.json``. A checkpoint under ``out_dir/_train`` makes an interrupted build
    resume; ``resume=False`` starts over. ``max_steps`` simulates an interruption (for tests).
    """
    out = Path(out_dir) if out_dir is not None else cache_dir("default-model") / f"custom-{recipe_hash(recipe, device)}"
    with _threads(recipe.num_threads):
        return _build(recipe, data_root, out, heldout_loss=heldout_loss, resume=resume, progress=progress,
                      device=device, max_steps=max_steps)


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


def _build(recipe: DefaultModelRecipe, data_root: str | os.PathLike[str] | None, out: Path, *,
           heldout_loss: HeldoutLoss, resume: bool, progress: bool, device: str | None, max_steps: int | None) -> Path:
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
        recipe, data_root, per_language=recipe.heldout_per_language, seed=recipe.seed), loss=heldout_loss)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    write_json(out / CURVE_NAME, result.curve)
    write_json(out / "corpus_stats.json", corpus.stats)
    write_manifest(
        out, kind="default-model", config=recipe, seed=recipe.seed, model_id=str(out),
        extra={"recipe_hash": recipe_hash(recipe, device), "builder_version": BUILDER_VERSION,
               "stopped_by": result.stopped_by, "steps": result.steps_done, "planned_steps": recipe.steps,
               "precision": result.precision,
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
    from interp.core.artifacts import InputError

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
    from interp.core.artifacts import file_sha256

    return {p.name: {"size": p.stat().st_size, "sha256": file_sha256(p, n=None)}
            for p in sorted(directory.glob("*.safetensors"))}


def _damage(directory: Path, manifest: dict[str, Any]) -> str | None:
    """Return what is wrong with a finished build's weights, or None."""
    from interp.core.artifacts import CorruptFileError, check_safetensors, file_sha256

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
    from interp.core.artifacts import tree_fingerprint
    from interp.core.paths import data_root as resolve_root
    from interp.data.sources import GETTEXT_DIR

    loc = Path(GETTEXT_DIR)
    return data_tag_from(tree_fingerprint(resolve_root(data_root)),
                         tree_fingerprint(loc, content=False) if loc.is_dir() else None)


def data_tag_from(data_fingerprint: str, gettext_fingerprint: str | None) -> str:
    """Return :func:`data_tag` from fingerprints already taken (the data root's content, the catalogs' (path, size, mtime))."""
    from interp.core.artifacts import stable_hash

    return stable_hash({"data": data_fingerprint, "gettext": gettext_fingerprint}, n=12)


def resolve_preset(preset: str | None = None, data_root: str | os.PathLike[str] | None = None,
                   seed: int | None = None, *, tag: str | None = None) -> tuple[str, DefaultModelRecipe, Path]:
    """Return (recipe name, recipe, cache directory); ``None`` is ``$XDETOX_DEFAULT_PRESET``, else ``standard``.

    The directory is keyed by the recipe (``seed`` replaces its seed) and by the data it is trained
    from (:func:`data_tag`), so a model built from one data root is never reused for another. ``tag``
    is that data tag when the caller has it already (:func:`data_tag_from`).
    """
    preset, recipe = named_recipe(preset, seed)
    name = _CACHE_NAMES.get(preset, preset)
    tag = tag if tag is not None else data_tag(data_root)
    return preset, recipe, cache_dir("default-model") / f"{name}-{recipe_hash(recipe)}-{tag}"


def _check_belongs(directory: Path, recipe: DefaultModelRecipe) -> None:
    """Raise unless the build in ``directory`` was made from ``recipe`` as it resolves here (hash, precision)."""
    from interp.core.artifacts import InputError, read_json
    from interp.default_model.recipe import effective_precision

    m = read_json(directory / "manifest.json")
    want = {"recipe_hash": recipe_hash(recipe), "precision": effective_precision(recipe)}
    got = {"recipe_hash": m.get("recipe_hash"), "precision": m.get("precision", "bf16")}  # older builds: bf16
    if got != want:
        raise InputError(f"{directory}: the cached default model was built from {got}, not {want}; delete the "
                         f"folder or rebuild with `xdetox model build-default --force`")


def default_model_dir(preset: str | None = None, data_root: str | os.PathLike[str] | None = None, *,
                      build: bool = True, progress: bool = True, heldout_loss: HeldoutLoss | None = None,
                      seed: int | None = None) -> Path:
    """Return the cached ``save_pretrained`` directory of recipe ``preset``, building it on first use.

    ``build=True`` needs ``heldout_loss`` (see :func:`build_default_model`), even when the model is cached;
    :func:`interp.model.loading.default_model_path` passes the model layer's :func:`interp.model.lm_loss.lm_loss`.

    ``preset=None`` (what ``load_model("default")`` uses) is ``$XDETOX_DEFAULT_PRESET`` when set (tests
    and CI use ``smoke``), else ``standard``. ``seed`` replaces the recipe's seed. With ``build=False`` a
    missing model is an error instead of a build.
    """
    if build and heldout_loss is None:  # checked before the cache, so a warm cache cannot hide the omission
        raise TypeError("default_model_dir(build=True) needs heldout_loss= (interp.model.lm_loss.lm_loss); "
                        "interp.model.loading.default_model_path(preset, data_root) passes it")
    preset, recipe, directory = resolve_preset(preset, data_root, seed)
    if is_built(directory):
        _check_belongs(directory, recipe)
        return directory
    if not build:
        seed_flag = f" --seed {seed}" if seed is not None else ""
        raise FileNotFoundError(f"default model {preset!r} is not built at {directory}; "
                                f"run `xdetox model build-default --preset {preset}{seed_flag}`")
    with _build_lock(directory):
        if not is_built(directory):
            build_default_model(recipe, data_root, directory, heldout_loss=heldout_loss, progress=progress)
    return directory
