"""The embedded default model: a small multilingual GPT-2 trained offline, deterministically. (corpus)."""
from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from interp.default_model.recipe import DefaultModelRecipe

EOS = "<|endoftext|>"


PAD = "<pad>"


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
    is one of ``interp.data.split.heldout_texts`` (the RTP-LX eval split and translated-200 in every
    language), is dropped. ``val_fraction`` of the remaining unique documents form the val set.
    """
    from interp.data import records
    from interp.data import rtplx
    from interp.data import sources
    from interp.data import split
    from interp.core.paths import data_root as resolve_root

    root = resolve_root(data_root)
    heldout = split.heldout_texts(root)  # already normalised with records.normalize_text
    rng = random.Random(recipe.seed)
    stats: dict[str, Any] = {"sources": {}, "dropped_heldout": 0}
    docs: list[tuple[str, str]] = []  # (source, text)

    def add(source: str, texts: list[str], repeat: int) -> None:
        kept = []
        for t in texts:
            t = t.strip()
            if not t:
                continue
            if records.normalize_text(t) in heldout:
                stats["dropped_heldout"] += 1
                continue
            kept.append(t)
        kept = sorted(set(kept))
        stats["sources"][source] = {"unique": len(kept), "repeat": repeat}
        docs.extend((source, t) for t in kept for _ in range(repeat))

    prompts = rtplx.load_rtplx(root, languages=list(recipe.languages))
    train_prompts = split.rtplx_split(prompts, "train", root=root)
    stats["rtplx_eval_prompts_dropped"] = len(prompts) - len(train_prompts)
    for lang in recipe.languages:
        texts = [p.text for p in train_prompts if p.lang == lang]
        add(f"rtplx:{lang}", texts, recipe.rtplx_repeat_en if lang == "en" else recipe.rtplx_repeat_other)
    if recipe.paradetox_repeat:
        rows = sources.load_paradetox(root)
        add("paradetox:toxic", [r.toxic for r in rows], recipe.paradetox_repeat)
        if recipe.paradetox_neutrals:
            add("paradetox:neutral", [n for r in rows for n in r.neutrals], 1)
    if recipe.davidson_repeat:
        add("davidson", [r.text for r in sources.load_davidson(root)], recipe.davidson_repeat)
    if recipe.gettext_per_language:
        # Parallel lists (line i is the same string in every language): one seeded draw of
        # line numbers per language, so English sources of the drawn lines come along.
        parallel = sources.gettext_parallel(list(recipe.languages))
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


def heldout_texts_by_language(recipe: DefaultModelRecipe, data_root: str | os.PathLike[str] | None = None, *,
                              per_language: int | None = None, seed: int = 0) -> dict[str, list[str]]:
    """Return {lang: RTP-LX evaluation-split prompt texts}: never trained on, used for held-out loss.

    ``per_language`` draws that many per language (seeded); None/0 keeps all.
    """
    from interp.data import rtplx
    from interp.data import split
    from interp.core.paths import data_root as resolve_root

    prompts = split.rtplx_split(rtplx.load_rtplx(resolve_root(data_root), languages=list(recipe.languages)), "eval")
    out: dict[str, list[str]] = {}
    for p in sorted(prompts, key=lambda p: p.id):
        out.setdefault(p.lang, []).append(p.text)
    if per_language:
        out = {lang: random.Random(f"{seed}:heldout:{lang}").sample(texts, min(per_language, len(texts)))
               for lang, texts in out.items()}
    return out
