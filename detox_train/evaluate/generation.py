"""Batched sampling of k continuations per prompt: in memory, or resumable in a keyed JSONL.

:func:`generate` returns :class:`Sample` rows that carry their prompt (id, language, text hash);
with ``out_path`` the same rows are streamed to a JSONL that a rerun resumes (a thin wrapper:
one row implementation, :func:`_sample_batches`, serves both).

Determinism regardless of batch composition: every (prompt, sample) row draws its token from its
own counter-based random stream (seeded by ``seed``, the prompt id and the sample index), so a
row's continuation does not depend on which other rows share its batch. The draw itself is an
inverse-CDF sample from the temperature + top-p distribution, done inside a logits processor
that leaves HF ``generate`` (KV cache, ``num_return_sequences``, left padding) to do the rest.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from jaxtyping import Float, Int

from interp.core.artifacts import JsonlAppender, make_manifest, read_json, to_jsonable, write_json, write_jsonl
from interp.data.languages import normalize_language

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass(frozen=True)
class Sample:
    """One sampled continuation of one prompt, carrying its prompt record (id, language, text hash).

    The prompt's text itself is not kept: ``prompt_sha`` (:func:`text_sha`) proves which text a
    row continued without putting RTP-LX prompt text into any artifact.
    """

    prompt_id: str
    lang: str
    sample_index: int
    text: str
    n_tokens: int
    prompt_sha: str = ""  # "" only for rows read from files that predate the hash

    def continues(self, prompt: Any) -> bool:
        """Return whether this row continues ``prompt`` (same id and, when recorded, same text)."""
        return self.prompt_id == prompt.id and (not self.prompt_sha or self.prompt_sha == text_sha(prompt.text))


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling settings recorded in the manifest next to the samples JSONL."""

    k: int = dataclasses.field(default=25, metadata={"help": "continuations per prompt"})
    max_new_tokens: int = dataclasses.field(default=20, metadata={"help": "new tokens per continuation"})
    temperature: float = dataclasses.field(default=0.9, metadata={"help": "sampling temperature"})
    top_p: float = dataclasses.field(default=0.8, metadata={"help": "nucleus sampling mass"})
    seed: int = dataclasses.field(default=0, metadata={"help": "base seed; per-row seeds derive from it"})
    backend: str = dataclasses.field(default="hf", metadata={"help": "hf (transformers generate) or vllm"})


# ----------------------------------------------------------------------------- seeding
def row_seed(seed: int, prompt_id: str, sample_index: int) -> int:
    """Return the 63-bit seed of one (prompt, sample) row, independent of batching."""
    h = hashlib.sha256(f"{seed}\x00{prompt_id}\x00{sample_index}".encode("utf-8")).digest()
    return int.from_bytes(h[:8], "little") >> 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return z ^ (z >> np.uint64(31))


def row_uniforms(seeds: np.ndarray, step: int) -> np.ndarray:
    """Return one U[0,1) draw per row for decoding step ``step`` (counter-based, batch-free)."""
    with np.errstate(over="ignore"):
        x = _splitmix64(seeds.astype(np.uint64) ^ _splitmix64(np.full_like(seeds, step, dtype=np.uint64)))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


class RowSeededSampler:
    """HF logits processor that samples each row from its own random stream.

    It applies temperature and top-p (same rule as ``TopPLogitsWarper``), draws the token by
    inverse CDF with the row's uniform, and returns logits that are 0 at that token and -inf
    elsewhere, so greedy decoding in ``generate`` picks exactly the sampled token.
    """

    def __init__(self, seeds: Sequence[int], prompt_len: int, temperature: float, top_p: float) -> None:
        self.seeds = np.asarray(seeds, dtype=np.uint64)
        self.prompt_len = prompt_len
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: Int[torch.Tensor, "batch pos"],
                 scores: Float[torch.Tensor, "batch vocab"]) -> Float[torch.Tensor, "batch vocab"]:
        step = input_ids.shape[1] - self.prompt_len
        logits = scores.float() / self.temperature
        sorted_logits, sorted_idx = torch.sort(logits, dim=-1, descending=False)
        probs_sorted = sorted_logits.softmax(dim=-1)
        cum = probs_sorted.cumsum(dim=-1)
        # Same nucleus as TopPLogitsWarper: drop the low tail whose mass is <= 1 - top_p, keep >= 1.
        remove = cum <= (1 - self.top_p)
        remove[..., -1:] = False
        probs_sorted = probs_sorted.masked_fill(remove, 0.0)
        cdf = probs_sorted.cumsum(dim=-1)
        u = torch.from_numpy(row_uniforms(self.seeds, step)).to(cdf.device, dtype=cdf.dtype)
        target = u * cdf[:, -1]
        pos = torch.searchsorted(cdf, target.unsqueeze(-1), right=True).clamp_max(cdf.shape[-1] - 1)
        # A zero-probability slot can only be hit at its boundary; move forward to a kept token.
        kept = ~remove
        pos = torch.where(kept.gather(-1, pos), pos, kept.float().argmax(dim=-1, keepdim=True))
        token = sorted_idx.gather(-1, pos)
        out = torch.full_like(scores, float("-inf"))
        out.scatter_(-1, token, 0.0)
        return out


# ----------------------------------------------------------------------------- model plumbing
def _resolve_model(model: Any, tokenizer: Any) -> tuple[Any, Any]:
    """Return (hf_model, tokenizer) behind a bridge, ModelView or HF model."""
    from interp.model.architecture import hf_model_of
    from interp.model.loading import ModelView

    inner = model.model if isinstance(model, ModelView) else model
    hf = hf_model_of(inner)
    tok = tokenizer or getattr(inner, "tokenizer", None)
    if tok is None:
        raise ValueError("no tokenizer: pass tokenizer= with a plain HF model (a TransformerBridge carries one)")
    if tok.pad_token is None:  # left padding needs a pad id; eos is the usual stand-in
        tok.pad_token = tok.eos_token
    return hf, tok


def _prompt_rule(model: Any, tokenizer: Any, max_new_tokens: int) -> tuple[Any, int | None]:
    """Return (tokenization rule, prompt token budget) of the model generation runs on."""
    from interp.model.loading import ModelView
    from interp.model.tokenization import context_length, token_rule

    inner = model.model if isinstance(model, ModelView) else model
    rule = token_rule(inner, tokenizer=tokenizer)
    limit = context_length(inner)
    return rule, (None if limit is None else max(limit - max_new_tokens, 1))


def _model_id(model: Any) -> str:
    from interp.model.loading import model_id

    try:
        return model_id(model)
    except TypeError:
        return type(model).__name__


def text_sha(text: str) -> str:
    """Return the short sha256 of a text (keys each sample row to the exact prompt it continues)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _validate(prompts: Sequence[Any]) -> list[Any]:
    if not prompts:
        raise ValueError("no prompts to generate from: the prompt list is empty (check --languages / --n-prompts)")
    seen: set[str] = set()
    for i, p in enumerate(prompts):
        pid = getattr(p, "id", None)
        if not pid:
            raise ValueError(f"prompt #{i}: missing id; prompts must be interp.data.records.Prompt records")
        if pid in seen:
            raise ValueError(f"prompt {pid}: duplicate prompt id (each prompt must appear once)")
        seen.add(pid)
        normalize_language(p.lang, where=f"prompt {pid} field lang")
        if not isinstance(p.text, str) or not p.text.strip():
            raise ValueError(f"prompt {pid}: empty prompt text; drop it or fix the data file")
    return list(prompts)


def _manifest_path(out_path: Path) -> Path:
    return out_path.with_name(out_path.name + ".manifest.json")


def _check_manifest(out_path: Path, settings: GenerationSettings, fingerprint: str | None,
                    tokenization: Any = None, prompt_budget: int | None = None) -> None:
    """Refuse to resume a file written with other settings or other weights (it would mix two experiments).

    Models are compared by weight fingerprint (:func:`interp.model.loading.model_fingerprint`), never by
    name: the same path can hold other weights, and one model can live at two paths.
    """
    mpath = _manifest_path(out_path)
    if not out_path.exists() or out_path.stat().st_size == 0:
        return
    old = read_json(mpath) if mpath.exists() else {}
    # The tokenization rule (BOS policy, adds-BOS) and the prompt budget decide the prompt ids a row continued.
    if old.get("config") != dataclasses.asdict(settings) or to_jsonable(old.get("tokenization")) != to_jsonable(
            tokenization) or old.get("prompt_budget") != prompt_budget:
        raise ValueError(f"{out_path}: existing samples were generated with other settings, tokenization rule "
                         f"or prompt budget (see {mpath}); use a new --out file or delete the old one")
    if fingerprint is None or old.get("model_fingerprint") != fingerprint:
        why = ("this backend cannot fingerprint its weights" if fingerprint is None else
               f"they come from another model (weights fingerprint {old.get('model_fingerprint')}, "
               f"this model {fingerprint})")
        raise ValueError(f"{out_path}: cannot resume the existing samples: {why}; use a new --out file or "
                         "delete the old one")


# ----------------------------------------------------------------------------- generation
def _left_padded(rule: Any, texts: list[str], budget: int | None, pad_id: int, device: Any) -> dict[str, Any]:
    """Return left-padded ``input_ids``/``attention_mask`` of the prompts' ids under the tokenization rule."""
    seqs, _ = rule.encode(texts, "prompt", max_length=budget)
    width = max(len(x) for x in seqs)
    ids = torch.tensor([[pad_id] * (width - len(x)) + x for x in seqs], device=device)
    mask = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in seqs], device=device)
    return {"input_ids": ids, "attention_mask": mask}


def _generate_hf(hf: Any, tok: Any, batch: list[Any], todo: dict[str, list[int]], s: GenerationSettings,
                 rule: Any = None, budget: int | None = None) -> list[Sample]:
    from transformers import GenerationConfig

    if rule is None:
        from interp.model.tokenization import token_rule

        rule = token_rule(tokenizer=tok)
    device = next(hf.parameters()).device
    enc = _left_padded(rule, [p.text for p in batch], budget, tok.pad_token_id, device)
    seeds = [row_seed(s.seed, p.id, j) for p in batch for j in range(s.k)]
    sampler = RowSeededSampler(seeds, enc["input_ids"].shape[1], s.temperature, s.top_p)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    # Each prompt repeated k times = what num_return_sequences does inside generate (greedy mode
    # refuses that flag, and our processor has already done the sampling).
    enc = {key: v.repeat_interleave(s.k, dim=0) for key, v in enc.items()}
    cfg = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=s.max_new_tokens,
                           pad_token_id=pad_id, eos_token_id=tok.eos_token_id,
                           bos_token_id=tok.bos_token_id)
    from transformers import LogitsProcessorList

    with torch.no_grad():
        out = hf.generate(**enc, generation_config=cfg, logits_processor=LogitsProcessorList([sampler]))
    new = out[:, enc["input_ids"].shape[1]:].cpu()
    samples: list[Sample] = []
    for r in range(new.shape[0]):
        p, j = batch[r // s.k], r % s.k
        if j not in todo[p.id]:
            continue
        ids = new[r].tolist()
        if tok.eos_token_id is not None and tok.eos_token_id in ids:
            ids = ids[:ids.index(tok.eos_token_id)]
        samples.append(Sample(p.id, normalize_language(p.lang), j, tok.decode(ids, skip_special_tokens=True), len(ids),
                              text_sha(p.text)))
    return samples


def _vllm_prompt_rule(model: Any, max_new_tokens: int) -> tuple[Any, int | None]:
    """Return (tokenization rule, prompt token budget) of a ``vllm.LLM`` (its own HF tokenizer)."""
    from interp.model.tokenization import token_rule

    rule = token_rule(model, tokenizer=model.get_tokenizer())
    try:
        limit = int(model.llm_engine.model_config.max_model_len)
    except (AttributeError, TypeError, ValueError):
        limit = None
    return rule, (None if limit is None else max(limit - max_new_tokens, 1))


def _generate_vllm(model: Any, batch: list[Any], todo: dict[str, list[int]], s: GenerationSettings,
                   rule: Any = None, budget: int | None = None, sampling_params: Any = None) -> list[Sample]:
    """vLLM backend: one request per prompt with its own seed (optional dependency).

    Prompts go in as token ids from the tokenization rule (BOS policy, left truncation to the
    budget), so vLLM samples continue exactly the ids the HF backend would.
    """
    if sampling_params is None:
        try:
            from vllm import SamplingParams as sampling_params
        except ImportError as e:  # pragma: no cover - optional
            raise ImportError("backend='vllm' needs vLLM: pip install 'xdetox[vllm]' (or use backend='hf')") from e
    if rule is None:
        rule, budget = _vllm_prompt_rule(model, s.max_new_tokens)
    params = [sampling_params(n=s.k, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_new_tokens,
                              seed=row_seed(s.seed, p.id, 0) & 0x7FFFFFFF) for p in batch]
    ids, _ = rule.encode([p.text for p in batch], "prompt", max_length=budget)
    outs = model.generate([{"prompt_token_ids": x} for x in ids], params, use_tqdm=False)
    samples = []
    for p, o in zip(batch, outs):
        for j, c in enumerate(o.outputs):
            if j in todo[p.id]:
                samples.append(Sample(p.id, normalize_language(p.lang), j, c.text, len(c.token_ids), text_sha(p.text)))
    return samples


def _settings(settings: GenerationSettings | None, overrides: dict[str, Any], batch_size: int) -> GenerationSettings:
    """Return ``settings`` (default: :class:`GenerationSettings`) with ``overrides`` applied, validated."""
    names = {f.name for f in dataclasses.fields(GenerationSettings)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"generate() got unknown setting(s) {unknown}; GenerationSettings has {sorted(names)}")
    s = dataclasses.replace(settings or GenerationSettings(), **overrides)
    if s.k < 1 or s.max_new_tokens < 1 or batch_size < 1:
        raise ValueError(f"k, max_new_tokens and batch_size must be >= 1 (got {s.k}, {s.max_new_tokens}, {batch_size})")
    if not 0 < s.top_p <= 1 or s.temperature <= 0:
        raise ValueError(f"need 0 < top_p <= 1 and temperature > 0 (got top_p={s.top_p}, temperature={s.temperature})")
    if s.backend not in ("hf", "vllm"):
        raise ValueError(f"backend must be 'hf' or 'vllm', got {s.backend!r}")
    return s


def _sample_batches(model: Any, pending: list[Any], todo: dict[str, list[int]], s: GenerationSettings, rule: Any,
                    budget: int | None, *, tokenizer: Any, batch_size: int, progress: bool) -> Any:
    """Yield the new :class:`Sample` rows of ``todo`` batch by batch (the one row implementation)."""
    from tqdm.auto import tqdm

    if pending and s.backend == "hf":
        from interp.model.loading import activate

        hf, tok = _resolve_model(model, tokenizer)
    bar = tqdm(total=len(pending), desc="generate", unit="prompt", disable=not progress or not pending)
    for start in range(0, len(pending), batch_size):
        batch = pending[start:start + batch_size]
        if s.backend == "hf":
            with activate(model):  # a ModelView toggles its adapter for the call
                new = _generate_hf(hf, tok, batch, todo, s, rule, budget)
        else:
            new = _generate_vllm(model, batch, todo, s, rule, budget)
        yield new
        bar.update(len(batch))
    bar.close()


def generate(model: Any, prompts: Sequence[Any], settings: GenerationSettings | None = None, *,
             out_path: str | os.PathLike[str] | None = None, batch_size: int = 8, progress: bool = True,
             tokenizer: Any = None, **overrides: Any) -> list[Sample]:
    """Return ``settings.k`` sampled continuations per prompt, ordered by prompt then sample index.

    ``model`` is a TransformerBridge, a :class:`interp.model.loading.ModelView`, or an HF causal LM
    (then pass ``tokenizer``); for ``settings.backend == "vllm"`` a ``vllm.LLM``. ``settings``
    defaults to :class:`GenerationSettings`; keyword ``overrides`` (``k=``, ``seed=``, ...) replace
    its fields. Each :class:`Sample` carries its prompt's id, language and text hash.

    Without ``out_path`` everything stays in memory. With it, the rows are also streamed to that
    JSONL, resumable after a crash or kill -9 (:func:`_generate_resumable`): prompts already
    complete there are skipped, so a rerun never duplicates or drops a line.
    """
    s = _settings(settings, overrides, batch_size)
    prompts = _validate(prompts)
    if s.backend == "hf":  # encoders (BERT/XLM-R/e5) cannot sample: a clear refusal, not a shape error
        from interp.model.architecture import get_adapter, require_generation

        require_generation(get_adapter(model.model if hasattr(model, "adapter_enabled") else model).spec,
                           "sampling continuations (evaluation)")
    # Both backends encode prompts by the one rule (vLLM gets token ids).
    rule, budget = (_prompt_rule(model, tokenizer, s.max_new_tokens) if s.backend == "hf"
                    else _vllm_prompt_rule(model, s.max_new_tokens))
    kw = dict(tokenizer=tokenizer, batch_size=batch_size, progress=progress)
    if out_path is not None:
        return _generate_resumable(model, prompts, s, rule, budget, Path(out_path), **kw)
    todo = {p.id: list(range(s.k)) for p in prompts}
    done = {(x.prompt_id, x.sample_index): x for new in _sample_batches(model, prompts, todo, s, rule, budget, **kw)
            for x in new}
    return [done[(p.id, j)] for p in prompts for j in range(s.k)]


def _generate_resumable(model: Any, prompts: list[Any], s: GenerationSettings, rule: Any, budget: int | None,
                        out_path: Path, **kw: Any) -> list[Sample]:
    """Return the samples of :func:`generate`, resumed from and streamed to the JSONL ``out_path``.

    A resume is keyed by what produced the rows: the sampling settings and the model's weight
    fingerprint (another model or settings: refused), and per row the hash of the prompt text (a
    row for another text under the same id is regenerated). On return the file holds exactly the
    returned rows, so a smaller prompt set never leaves extra rows behind for scoring.
    """
    mid = _model_id(model) if s.backend == "hf" else str(getattr(model, "model_id", "vllm"))
    if s.backend == "hf":
        from interp.model.loading import model_fingerprint

        fingerprint: str | None = model_fingerprint(model)
    else:
        fingerprint = None
    sha = {p.id: text_sha(p.text) for p in prompts}
    _, cut = rule.encode([p.text for p in prompts], "prompt", max_length=budget)
    # Prompts longer than the context keep their end (what generation continues); say how many.
    extra: dict[str, Any] = {"model_fingerprint": fingerprint, "n_prompts": len(prompts),
                             "prompts_sha": text_sha("\n".join(f"{p.id}\t{sha[p.id]}" for p in prompts)),
                             "languages": sorted({normalize_language(p.lang) for p in prompts}),
                             "tokenization": rule.describe(), "prompt_budget": budget, "n_prompts_truncated": len(cut),
                             "truncated_prompt_ids": [prompts[i].id for i in cut]}
    _check_manifest(out_path, s, fingerprint, extra["tokenization"], extra["prompt_budget"])
    write_json(_manifest_path(out_path), make_manifest(
        kind="eval-samples", config=s, seed=s.seed, model_id=mid, extra=extra))

    with JsonlAppender(out_path) as app:
        done: dict[tuple[str, int], Sample] = {}
        in_file: list[tuple[str, int]] = []
        for r in app.records():
            key = (r["prompt_id"], int(r["sample_index"]))
            in_file.append(key)
            # A row is reused only for the very prompt text it continued (same id, other text: regenerate).
            if r.get("prompt_sha") is not None and r.get("prompt_sha") == sha.get(key[0]) and key[1] < s.k:
                done.setdefault(key, Sample(**{f: r[f] for f in Sample.__dataclass_fields__}))
        todo = {p.id: [j for j in range(s.k) if (p.id, j) not in done] for p in prompts}
        pending = [p for p in prompts if todo[p.id]]
        for new in _sample_batches(model, pending, todo, s, rule, budget, **kw):
            app.write_many([dataclasses.asdict(x) for x in new])
            for x in new:
                done[(x.prompt_id, x.sample_index)] = x
                in_file.append((x.prompt_id, x.sample_index))
    order = [(p.id, j) for p in prompts for j in range(s.k)]
    if in_file != order:  # stale rows (other prompts, texts or k) or another order: the file = exactly this set
        write_jsonl(out_path, [dataclasses.asdict(done[key]) for key in order])
    return [done[key] for key in order]


def refuse_repeated_row(seen: dict[tuple[Any, Any], int], key: tuple[Any, Any], where: str, line: int,
                        noun: str) -> None:
    """Record that ``key`` = (prompt_id, sample_index) was read on ``line``; a key read before is an
    :class:`~interp.core.artifacts.InputError` naming both lines (samples and scored-samples files)."""
    from interp.core.artifacts import InputError

    if key in seen:
        raise InputError(f"{where}: duplicate {noun} (prompt_id {key[0]!r}, sample_index {key[1]}) first seen "
                         f"on line {seen[key]}; each {noun} must appear once: drop the repeated line")
    seen[key] = line


def read_samples(path: str | os.PathLike[str]) -> list[Sample]:
    """Return the samples stored in a JSONL written by :func:`generate`."""
    from interp.core.artifacts import InputError, numbered_jsonl

    path = Path(path)
    if not path.is_file() and not path.is_dir():
        raise FileNotFoundError(f"{path}: no samples file; write one with `xdetox eval generate --out {path}`")
    out = []
    seen: dict[tuple[str, int], int] = {}
    for n, r in numbered_jsonl(path):
        where = f"{path}:{n}"
        for key in ("prompt_id", "lang", "sample_index", "text"):
            if key not in r:
                raise InputError(f"{where}: missing field {key!r} (expected prompt_id, lang, sample_index, text)")
        if not isinstance(r["prompt_id"], str) or not r["prompt_id"]:
            raise InputError(f"{where}: field 'prompt_id' must be a non-empty string, got {r['prompt_id']!r}")
        if not isinstance(r["text"], str):
            raise InputError(f"{where}: field 'text' must be a string, got {type(r['text']).__name__} "
                             f"{r['text']!r}; fix or drop the line")
        if not isinstance(r["sample_index"], int) or isinstance(r["sample_index"], bool) or r["sample_index"] < 0:
            raise InputError(f"{where}: field 'sample_index' must be an integer >= 0, got {r['sample_index']!r}")
        ntok = r.get("n_tokens", 0)
        if not isinstance(ntok, int) or isinstance(ntok, bool):
            raise InputError(f"{where}: field 'n_tokens' must be an integer, got {ntok!r}")
        refuse_repeated_row(seen, (r["prompt_id"], r["sample_index"]), where, n, "sample")
        psha = r.get("prompt_sha") or ""
        if not isinstance(psha, str):
            raise InputError(f"{where}: field 'prompt_sha' must be a string, got {psha!r}")
        out.append(Sample(r["prompt_id"], normalize_language(r["lang"], where=f"{where} field 'lang'"),
                          r["sample_index"], r["text"], ntok, psha))
    if not out:
        raise InputError(f"{path}: the samples file is empty; generate samples first (xdetox eval generate)")
    return out
