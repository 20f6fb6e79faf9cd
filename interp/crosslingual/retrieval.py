"""Bilingual sentence retrieval (paper stage 6): does English sentence i find its translation?

Per layer (embeddings through the last layer) each sentence is the mask-aware mean of its
hidden states. :func:`retrieval_accuracy` is *true* top-1 retrieval: the share of sentences i
whose nearest neighbour (cosine) on the other side is i. The reference code printed the mean
cosine of aligned pairs as "retrieval acc"; that number is :func:`mean_paired_cosine` here and
is never called accuracy.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor

from interp.model.architecture import get_adapter, hf_model_of
from interp.core.artifacts import load_tensors, read_jsonl, save_tensors, stable_hash, write_json, write_jsonl
from interp.data.languages import normalize_language
from interp.model.loading import activate, model_fingerprint
from interp.core.paths import cache_dir

PER_LAYER_COLUMNS = ("lang", "layer", "acc_en_to_x", "acc_x_to_en", "acc_mean", "mean_paired_cosine")
PER_LANGUAGE_COLUMNS = ("lang", "retrieval_acc", "acc_en_to_x", "acc_x_to_en", "mean_paired_cosine")
ParallelSource = Literal["translated200", "gettext", "rtplx"]


# ----------------------------------------------------------------------------- pure metrics
def _as_tensor(x: Any, name: str) -> Tensor:
    t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    if not t.is_floating_point():
        t = t.float()
    if t.dim() < 2:
        raise ValueError(f"{name}: expected [n, d] (or [layers, n, d]) embeddings, got shape {tuple(t.shape)}")
    return t.float()


def _pair_check(a: Tensor, b: Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"embeddings must be parallel (same shape): got {tuple(a.shape)} and {tuple(b.shape)}; "
                         "row i of each must be a translation of the other")
    if a.shape[-2] < 2:
        raise ValueError(f"retrieval needs at least 2 parallel sentences, got {a.shape[-2]}")


def _cosine_matrix(a: Float[Tensor, "*l n d"], b: Float[Tensor, "*l n d"]) -> Float[Tensor, "*l n n"]:
    a = torch.nn.functional.normalize(a, dim=-1)
    b = torch.nn.functional.normalize(b, dim=-1)
    return a @ b.transpose(-1, -2)


def retrieval_accuracies(a: Float[Tensor, "*l n d"], b: Float[Tensor, "*l n d"]
                         ) -> tuple[Float[Tensor, "*l"], Float[Tensor, "*l"]]:
    """Return (a->b, b->a) true top-1 retrieval accuracy, per leading (layer) index."""
    a, b = _as_tensor(a, "a"), _as_tensor(b, "b")
    _pair_check(a, b)
    sim = _cosine_matrix(a, b)
    target = torch.arange(sim.shape[-1], device=sim.device)
    a_to_b = (sim.argmax(dim=-1) == target).float().mean(-1)
    b_to_a = (sim.argmax(dim=-2) == target).float().mean(-1)
    return a_to_b, b_to_a


def retrieval_accuracy(a: Float[Tensor, "n d"], b: Float[Tensor, "n d"]) -> float:
    """Return the share of rows i of ``a`` whose nearest row of ``b`` by cosine is row i."""
    a, b = _as_tensor(a, "a"), _as_tensor(b, "b")
    if a.dim() != 2:
        raise ValueError(f"retrieval_accuracy takes [n, d] embeddings, got {tuple(a.shape)}; "
                         "use retrieval_accuracies for a stack of layers")
    return float(retrieval_accuracies(a, b)[0])


def paired_cosines(a: Float[Tensor, "*l n d"], b: Float[Tensor, "*l n d"]) -> Float[Tensor, "*l"]:
    """Return the mean cosine of aligned pairs (a_i, b_i), per leading (layer) index."""
    a, b = _as_tensor(a, "a"), _as_tensor(b, "b")
    _pair_check(a, b)
    return torch.nn.functional.cosine_similarity(a, b, dim=-1).mean(-1)


def mean_paired_cosine(a: Float[Tensor, "n d"], b: Float[Tensor, "n d"]) -> float:
    """Return the mean cosine similarity of aligned pairs (a_i, b_i).

    This is what the reference code printed as "retrieval acc"; it is not an accuracy.
    """
    return float(paired_cosines(a, b).mean())


# ----------------------------------------------------------------------------- representations
def _tokenizer_of(model: Any, tokenizer: Any) -> Any:
    tok = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tok is None:
        raise ValueError("no tokenizer: pass tokenizer= or a TransformerBridge (which carries .tokenizer)")
    return tok


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


@torch.no_grad()
def _compute_representations(model: Any, texts: Sequence[str], tokenizer: Any, batch_size: int,
                             max_length: int | None, progress: bool) -> Float[Tensor, "layers n d"]:
    from tqdm.auto import tqdm

    hf = hf_model_of(model)
    dev = _device_of(hf)
    from interp.model.tokenization import token_rule

    rule = token_rule(model, tokenizer=tokenizer if tokenizer is not getattr(model, "tokenizer", None) else None)
    ids, _ = rule.encode(list(texts), "sentence", max_length=max_length)
    adapter = get_adapter(hf)
    encoder = adapter.spec.is_encoder
    # An encoder's MLM head (250k-way logits per token on e5) is never needed here: run its encoder.
    runner = hf.base_model if encoder else hf
    empty = [i for i, x in enumerate(ids) if len(x) == 0]
    if empty:
        raise ValueError(f"texts {empty[:5]} tokenize to nothing; remove empty sentences from the parallel set")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths per batch: less padding
    out: Tensor | None = None
    for start in tqdm(range(0, len(order), batch_size), desc="retrieval reps", disable=not progress,
                      unit="batch", leave=False):
        rows = order[start:start + batch_size]
        width = max(len(ids[i]) for i in rows)
        # Right padding keeps every real token at its true position (no position_ids bookkeeping).
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        content = torch.zeros((len(rows), width), dtype=torch.float32)
        for r, i in enumerate(rows):
            input_ids[r, :len(ids[i])] = torch.tensor(ids[i])
            mask[r, :len(ids[i])] = 1
            content[r, :len(ids[i])] = torch.tensor(rule.content_mask(ids[i]), dtype=torch.float32)
        if encoder:
            hs = _encoder_hidden_states(adapter, runner, input_ids.to(dev), mask.to(dev))
        else:
            hs = runner(input_ids=input_ids.to(dev), attention_mask=mask.to(dev), output_hidden_states=True,
                        use_cache=False).hidden_states
        stacked = torch.stack([h.float() for h in hs])            # [layers, batch, pos, d]
        # Mean over the sentence's own tokens: padding and special tokens (BOS) are left out, since
        # one shared BOS state in every sentence would inflate every cosine.
        m = content.to(dev)[None, :, :, None]
        pooled = (stacked * m).sum(2) / m.sum(2)
        if out is None:
            out = torch.empty((stacked.shape[0], len(ids), stacked.shape[-1]), dtype=torch.float32)
        out[:, rows] = pooled.cpu()
    assert out is not None
    return out


def _encoder_hidden_states(adapter: Any, runner: torch.nn.Module, input_ids: Int[Tensor, "batch pos"],
                           mask: Int[Tensor, "batch pos"]) -> list[Float[Tensor, "batch pos d_model"]]:
    """Return [block 0 input, block 0 output, ..., last block output] of an encoder, by hooks.

    HF's ``output_hidden_states`` on a TransformerBridge-wrapped BERT reports each layer twice (the
    bridge's block wrapper is recorded as well), so the states are read off the blocks directly.
    For a post-LN encoder the last block's output is already normalised (= HF's last state).
    """
    from interp.model.architecture import unwrap

    states: list[Tensor] = []
    first = unwrap(adapter.block(0))
    handles = [first.register_forward_pre_hook(lambda m, args: states.append(args[0]))]
    for l in range(adapter.n_layers):
        handles.append(unwrap(adapter.block(l)).register_forward_hook(
            lambda m, args, out: states.append(out[0] if isinstance(out, (tuple, list)) else out)))
    try:
        runner(input_ids=input_ids, attention_mask=mask)
    finally:
        for h in handles:
            h.remove()
    if len(states) != adapter.n_layers + 1:
        raise RuntimeError(f"expected {adapter.n_layers + 1} hidden states from the encoder, got {len(states)}")
    return states


def layer_representations(model: Any, texts: Sequence[str], *, batch_size: int = 32, progress: bool = True,
                          tokenizer: Any = None, max_length: int | None = 256,
                          cache: bool = True) -> Float[Tensor, "n_layers_plus_1 n d_model"]:
    """Return mean-pooled hidden states of each text at every layer, embeddings first.

    Index 0 is the embedding output and index l the output of block l, as HF
    ``output_hidden_states`` reports them (the last one after the final norm). Texts are encoded
    as sentences by the run's tokenization rule (:mod:`interp.model.tokenization`); pooling is over the
    text's own tokens only (no padding, no BOS or other special tokens); texts are truncated to
    ``max_length`` tokens (capped at the model's ``max_position_embeddings``). ``model`` is a
    bridge, HF model or :class:`~interp.model.loading.ModelView`.
    Results are cached under ``cache_dir("retrieval")`` keyed by the model fingerprint, the
    texts and ``max_length``; batching is internal.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("layer_representations: no texts given")
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise ValueError(f"layer_representations: texts {bad[:5]} are empty or not strings")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    with activate(model) as m:
        tok = _tokenizer_of(m, tokenizer)
        # Never feed more positions than the model has (learned position tables index out of range).
        limit = getattr(hf_model_of(m).config, "max_position_embeddings", None)
        if isinstance(limit, int) and limit > 0:
            max_length = limit if max_length is None else min(max_length, limit)
        path = None
        if cache:
            from interp.model.tokenization import token_rule
            from interp.model.tokenization import tokenizer_fingerprint

            rule = token_rule(m, tokenizer=tokenizer)
            key = stable_hash({"texts": texts, "max_length": max_length,
                               "tokenizer": getattr(tok, "name_or_path", ""), "tokens": rule.describe(), "v": 2,
                               "tokenizer_fp": tokenizer_fingerprint(tok)})
            path = cache_dir("retrieval") / f"{model_fingerprint(model)}_{key}.safetensors"
            if path.is_file():
                try:
                    return load_tensors(path)[0]["reps"]
                except Exception:  # a corrupt cache entry is recomputed, never trusted
                    path.unlink(missing_ok=True)
        reps = _compute_representations(m, texts, tok, batch_size, max_length, progress)
    if path is not None:
        save_tensors(path, {"reps": reps}, {"n": len(texts), "max_length": max_length})
    return reps


# ----------------------------------------------------------------------------- parallel sets
def parallel_texts(source: ParallelSource = "translated200", languages: Iterable[str] | None = None, *,
                   root: str | os.PathLike[str] | None = None, limit: int | None = None) -> dict[str, list[str]]:
    """Return ``{lang: [texts]}``, row i parallel across languages, from a named parallel set.

    ``translated200`` (default) aligns by line, ``gettext`` by msgid, ``rtplx`` by RTP-LX
    ``Index`` through :func:`interp.data.rtplx.align_by_index` (its checks drop misaligned rows).
    """
    from interp.data import rtplx
    from interp.data import sources

    langs = list(languages) if languages is not None else None
    if source == "translated200":
        prompts = rtplx.load_translated_200(root, langs)
        out = {lang: [p.text for p in sorted(ps, key=lambda p: p.group)] for lang, ps in prompts.items()}
    elif source == "gettext":
        out = sources.gettext_parallel(langs)
        if not any(out.values()):
            raise FileNotFoundError("no gettext catalogs under /usr/share/locale for these languages; "
                                    "install translated packages (e.g. apt-get install coreutils with locales) "
                                    "or use source='translated200'")
    elif source == "rtplx":
        aligned, _report = rtplx.align_by_index(rtplx.load_rtplx(root, langs))
        keys = sorted(aligned)
        lang_list = list(next(iter(aligned.values())).keys()) if aligned else []
        out = {lang: [aligned[k][lang].text for k in keys] for lang in lang_list}
    else:
        raise ValueError(f"unknown parallel source {source!r}; use translated200, gettext or rtplx")
    if limit is not None:
        out = {lang: v[:limit] for lang, v in out.items()}
    return out


# ----------------------------------------------------------------------------- bilingual retrieval
@dataclass
class RetrievalResult:
    """Bilingual retrieval tables: ``per_layer`` (every layer) and ``per_language`` (aggregated)."""

    per_layer: pd.DataFrame
    per_language: pd.DataFrame
    pivot: str = "en"
    layers: list[int] = field(default_factory=list)   # the layers aggregated into per_language
    n_pairs: int = 0

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``retrieval_per_layer.jsonl``, ``retrieval_per_language.jsonl`` and ``retrieval.json``."""
        d = Path(directory)
        write_jsonl(d / "retrieval_per_layer.jsonl", self.per_layer.to_dict("records"))
        write_jsonl(d / "retrieval_per_language.jsonl", self.per_language.to_dict("records"))
        write_json(d / "retrieval.json", {"pivot": self.pivot, "layers": self.layers, "n_pairs": self.n_pairs})
        return d

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> "RetrievalResult":
        """Read a result written by :meth:`save`."""
        d = Path(directory)
        meta = json.loads((d / "retrieval.json").read_text(encoding="utf-8"))
        return cls(per_layer=pd.DataFrame(list(read_jsonl(d / "retrieval_per_layer.jsonl"))),
                   per_language=pd.DataFrame(list(read_jsonl(d / "retrieval_per_language.jsonl"))), **meta)


def resolve_layers(layers: None | str | tuple[int, int] | Sequence[int], n_layers_plus_1: int) -> list[int]:
    """Return the layer indices to aggregate: all (None/"all"), an inclusive (lo, hi) range, or a list."""
    if layers is None or layers == "all":
        return list(range(n_layers_plus_1))
    if isinstance(layers, str):
        raise ValueError(f"layers={layers!r}; use None, 'all', an inclusive (lo, hi) pair or a list of ints")
    if isinstance(layers, tuple) and len(layers) == 2:
        lo, hi = (int(v) for v in layers)
        out = list(range(lo, hi + 1))
    else:
        out = [int(v) for v in layers]
    bad = [v for v in out if not 0 <= v < n_layers_plus_1]
    if not out or bad:
        raise ValueError(f"layers {layers!r} out of range: valid indices are 0 (embeddings) .. "
                         f"{n_layers_plus_1 - 1} (last layer)")
    return out


def bilingual_retrieval(model: Any, parallel: Mapping[str, Sequence[str]], *, pivot: str = "en",
                        layers: None | str | tuple[int, int] | Sequence[int] = None, batch_size: int = 32,
                        progress: bool = True, tokenizer: Any = None, max_length: int | None = 256,
                        cache: bool = True) -> RetrievalResult:
    """Return per-layer and per-language retrieval between ``pivot`` and every other language.

    ``parallel`` maps language -> texts, row i parallel across languages (see
    :func:`parallel_texts`). ``per_language`` averages the chosen ``layers`` (default: all,
    embeddings included). Accuracies are fractions in [0, 1].
    """
    if not parallel:
        raise ValueError("bilingual_retrieval: empty parallel set")
    par = {normalize_language(k, where="bilingual_retrieval(parallel=)"): list(v) for k, v in parallel.items()}
    pivot = normalize_language(pivot, where="bilingual_retrieval(pivot=)")
    if pivot not in par:
        raise ValueError(f"pivot language {pivot!r} not in the parallel set (languages: {sorted(par)})")
    lengths = {k: len(v) for k, v in par.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"parallel texts differ in length per language: {lengths}; row i must be parallel in all")
    others = [k for k in par if k != pivot]
    if not others:
        raise ValueError(f"only the pivot {pivot!r} given; add at least one other language")
    reps = {lang: layer_representations(model, par[lang], batch_size=batch_size, progress=progress,
                                        tokenizer=tokenizer, max_length=max_length, cache=cache)
            for lang in [pivot, *others]}
    chosen = resolve_layers(layers, reps[pivot].shape[0])
    rows = []
    for lang in others:
        fwd, bwd = retrieval_accuracies(reps[pivot], reps[lang])
        cos = paired_cosines(reps[pivot], reps[lang])
        for layer in range(reps[pivot].shape[0]):
            rows.append({"lang": lang, "layer": layer, "acc_en_to_x": float(fwd[layer]),
                         "acc_x_to_en": float(bwd[layer]), "acc_mean": float((fwd[layer] + bwd[layer]) / 2),
                         "mean_paired_cosine": float(cos[layer])})
    per_layer = pd.DataFrame(rows, columns=list(PER_LAYER_COLUMNS))
    agg = (per_layer[per_layer["layer"].isin(chosen)]
           .groupby("lang", sort=False)[["acc_mean", "acc_en_to_x", "acc_x_to_en", "mean_paired_cosine"]].mean()
           .rename(columns={"acc_mean": "retrieval_acc"}).reset_index())
    return RetrievalResult(per_layer=per_layer, per_language=agg[list(PER_LANGUAGE_COLUMNS)], pivot=pivot,
                           layers=chosen, n_pairs=lengths[pivot])


@dataclass(frozen=True)
class BestLayer:
    """Retrieval per layer (mean over languages of ``acc_mean``) and the best layer's figure."""

    layer: int                  # the best layer of all (0 = embeddings)
    figure: float
    block_layer: int | None     # the best transformer block (layer >= 1): surface tokens alone can lift layer 0
    block_figure: float
    by_layer: dict[int, float]


def best_layer(per_layer: pd.DataFrame) -> BestLayer:
    """Return the best layer of a :class:`RetrievalResult` ``per_layer`` table (first one on a tie).

    Per layer the accuracy is averaged over languages (each already the mean of both directions);
    this is issue 17's "retrieval at the best layer" and the seed spread's ``retrieval_best_layer``.
    """
    by_layer = per_layer.groupby("layer")["acc_mean"].mean()
    if by_layer.empty:
        raise ValueError("best_layer: the per-layer retrieval table is empty")
    blocks = by_layer[by_layer.index >= 1]
    return BestLayer(layer=int(by_layer.idxmax()), figure=float(by_layer.max()),
                     block_layer=int(blocks.idxmax()) if len(blocks) else None,
                     block_figure=float(blocks.max()) if len(blocks) else float("nan"),
                     by_layer={int(k): float(v) for k, v in by_layer.items()})


__all__ = ["best_layer", "BestLayer", "retrieval_accuracy", "retrieval_accuracies", "mean_paired_cosine", "paired_cosines",
           "layer_representations", "bilingual_retrieval", "RetrievalResult", "parallel_texts", "resolve_layers"]
