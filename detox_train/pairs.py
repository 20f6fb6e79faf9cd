"""Preference-pair builders for DPO: PPLM JSONL, ParaDetox, on-policy samples; token-length filter; JSONL I/O.

Every builder returns ``list[interp.data.records.PreferencePair]`` whose ``source``/``meta`` say where each
pair came from (file and line, ParaDetox row, or prompt id and score gap).

ParaDetox choice: the toxic sentence and its neutral paraphrase are both *complete sentences*, not
continuations, so by default the prompt is empty (``prompt=""``) and the whole sentence is the
completion. The trainer then puts the tokenizer's BOS/EOS token in front so that every token of the
sentence is scored (see :func:`detox_train.dpo.train_dpo`). A shared prefix can be given instead
(e.g. ``prompt="Comment:"``); it is the same for chosen and rejected, so it only sets the context.
"""
from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Iterable, Sequence
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from interp.core.artifacts import write_jsonl
from interp.data.records import DataFormatError, PreferencePair

log = logging.getLogger(__name__)

PAIR_FIELDS = ("prompt", "chosen", "rejected")


# ----------------------------------------------------------------------------- builders
def pplm_pairs(path: str | os.PathLike[str]) -> tuple[list[PreferencePair], int]:
    """Return (pairs, number whose continuations repeated the prompt and were stripped) from the paper's JSONL."""
    from interp.data.sources import load_pplm_pairs

    pairs, n_stripped = load_pplm_pairs(path)
    if not pairs:
        raise DataFormatError(path, "no pairs in the file", hint="expected JSON lines with prompt_text, "
                              "unpert_gen_text and pert_gen_text")
    log.info("pplm pairs: %d read, %d had the prompt repeated at the start and were stripped",
             len(pairs), n_stripped)
    return pairs, n_stripped


def paradetox_pairs(root: str | os.PathLike[str] | None = None, *, prompt: str = "",
                    all_neutrals: bool = False) -> list[PreferencePair]:
    """Return ParaDetox pairs: chosen = a neutral paraphrase, rejected = the toxic original.

    ``prompt`` is shared by every pair (empty by default, see the module docstring). With
    ``all_neutrals`` each paraphrase makes its own pair; otherwise the first one is used. Rows
    whose paraphrase equals the toxic text are skipped (they carry no preference).
    """
    from interp.data.sources import load_paradetox

    out: list[PreferencePair] = []
    for row in load_paradetox(root):
        neutrals = row.neutrals if all_neutrals else row.neutrals[:1]
        for j, neutral in enumerate(neutrals):
            if neutral.strip() == row.toxic.strip() or not neutral.strip():
                continue
            pid = row.id if not all_neutrals else f"{row.id}:{j}"
            out.append(PreferencePair(id=pid, prompt=prompt, chosen=neutral, rejected=row.toxic,
                                      source="paradetox", meta={"row": row.id, "neutral_index": j}))
    return out


def _prompt_id_text(p: Any, i: int) -> tuple[str, str]:
    if isinstance(p, str):
        return f"prompt:{i}", p
    text = getattr(p, "text", None)
    if not isinstance(text, str):
        raise TypeError(f"prompts[{i}]: expected a str or a record with .text and .id, got {type(p).__name__}")
    return str(getattr(p, "id", f"prompt:{i}")), text


@torch.no_grad()
def onpolicy_pairs(model: Any, tokenizer: Any, prompts: Sequence[Any],
                   score_fn: Callable[[list[str]], list[float]], *, k: int = 4, max_new_tokens: int = 20,
                   seed: int = 0, temperature: float = 0.9, top_p: float = 0.8,
                   min_gap: float = 0.0) -> list[PreferencePair]:
    """Return on-policy pairs: per prompt, the least toxic of ``k`` samples (chosen) vs the most toxic (rejected).

    ``score_fn`` maps texts to toxicity scores (higher = more toxic), e.g. any scorer of the
    evaluation module. Prompts whose best and worst scores differ by ``<= min_gap`` (ties) or whose
    two samples are identical are skipped. ``meta`` records both scores and the gap. Sampling is
    seeded per prompt (``seed + i``), so the same inputs give the same pairs.
    """
    from tqdm.auto import tqdm

    from interp.model.architecture import hf_model_of

    if k < 2:
        raise ValueError(f"onpolicy_pairs: k must be >= 2 to form a pair, got {k}")
    hf = hf_model_of(model)
    device = next(hf.parameters()).device
    was_training = hf.training
    hf.eval()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    from interp.model.tokenization import token_rule

    rule = token_rule(model, tokenizer=tokenizer)
    out: list[PreferencePair] = []
    n_ties = 0
    try:
        for i, p in enumerate(tqdm(prompts, desc="on-policy pairs", leave=False)):
            pid, text = _prompt_id_text(p, i)
            # The run's tokenization rule: BOS by its policy; an empty prompt becomes the start token.
            ids = torch.tensor([rule.ids(text, "prompt")], device=device)
            torch.manual_seed(seed + i)
            gen = hf.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                              temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens,
                              num_return_sequences=k, pad_token_id=pad_id)
            conts = tokenizer.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=True)
            scores = [float(s) for s in score_fn(list(conts))]
            if len(scores) != len(conts):
                raise ValueError(f"score_fn returned {len(scores)} scores for {len(conts)} texts")
            lo = min(range(k), key=lambda j: scores[j])
            hi = max(range(k), key=lambda j: scores[j])
            gap = scores[hi] - scores[lo]
            if gap <= min_gap or conts[lo] == conts[hi]:
                n_ties += 1
                continue
            out.append(PreferencePair(
                id=f"onpolicy:{pid}", prompt=text, chosen=conts[lo], rejected=conts[hi], source="onpolicy",
                meta={"prompt_id": pid, "score_chosen": scores[lo], "score_rejected": scores[hi],
                      "score_gap": gap, "k": k, "seed": seed + i}))
    finally:
        hf.train(was_training)
    log.info("on-policy pairs: %d made, %d prompts skipped as ties", len(out), n_ties)
    return out


# ----------------------------------------------------------------------------- validation & filters
def _where(p: PreferencePair) -> str:
    meta = p.meta or {}
    if "file" in meta and "line" in meta:
        return f"{meta['file']}:{meta['line']} (pair {p.id})"
    if "line" in meta:
        return f"pair {p.id} (line {meta['line']})"
    return f"pair {p.id}"


def validate_pairs(pairs: Sequence[PreferencePair], *, where: str = "pairs") -> list[PreferencePair]:
    """Return ``pairs`` after checking they are usable for DPO; raise a ValueError naming the first bad pair."""
    if not pairs:
        raise ValueError(f"{where}: no preference pairs; need at least one (prompt, chosen, rejected) record")
    seen: set[str] = set()
    for p in pairs:
        for name in PAIR_FIELDS:
            if not isinstance(getattr(p, name), str):
                raise ValueError(f"{_where(p)}: field {name!r} must be a string")
        if not p.chosen.strip() or not p.rejected.strip():
            empty = "chosen" if not p.chosen.strip() else "rejected"
            raise ValueError(f"{_where(p)}: field {empty!r} is empty; drop the pair or fill it in")
        if p.chosen == p.rejected:
            raise ValueError(f"{_where(p)}: chosen == rejected, so the pair carries no preference; "
                             "drop it or fix the data")
        if p.id in seen:
            raise ValueError(f"{_where(p)}: duplicate pair id {p.id!r}; ids must be unique")
        seen.add(p.id)
    return list(pairs)


@dataclass
class FilterReport:
    """How many pairs a token-length filter kept and why it dropped the rest."""

    n_in: int
    n_kept: int
    n_prompt_too_long: int
    n_too_long: int
    max_length: int
    max_prompt_length: int
    dropped_ids: list[str] = field(default_factory=list)
    n_prompt_truncated: int = 0  # prompts cut from the left to max_prompt_length before filtering
    n_response_truncated: int = 0  # pairs whose responses were cut to max_length - max_prompt_length

    @property
    def n_dropped(self) -> int:
        return self.n_in - self.n_kept


def dpo_prompt_text(prompt: str, tokenizer: Any) -> str:
    """Return the prompt text handed to TRL, so that ``tokenizer(text)`` gives the rule's prompt ids.

    An empty prompt must become the start token exactly once: a tokenizer that adds BOS itself
    gets ``""`` (-> ``[BOS]``); one that does not gets the start token's text (-> ``[BOS]``/``[EOS]``).
    Writing ``"<s>"`` for a tokenizer that also adds BOS would give ``[BOS, BOS]``.
    """
    from interp.model.tokenization import native_adds_bos

    if prompt:
        return prompt
    return "" if native_adds_bos(tokenizer) else (tokenizer.bos_token or tokenizer.eos_token or "")


def _n_tokens(tokenizer: Any, texts: list[str], *, specials: bool = False) -> list[int]:
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=specials)["input_ids"]]


def truncate_prompts_left(pairs: Sequence[PreferencePair], tokenizer: Any, max_prompt_length: int,
                          max_length: int | None = None) -> tuple[list[PreferencePair], int, int]:
    """Return (pairs, n prompts cut, n pairs whose responses were cut): the paper-era TRL ``keep_end`` rule.

    The paper's TRL (0.8-0.9 ``DPOTrainer.tokenize_row``, ``truncation_mode="keep_end"``) did this per pair,
    with lengths in tokens as TRL tokenizes them (the prompt with its specials, each response + EOS):
    only when prompt + the longer response exceeds ``max_length``, keep the prompt's last
    ``max_prompt_length`` tokens; if the pair is still too long, cut both responses to their first
    ``max_length - max_prompt_length`` tokens. A long prompt whose pair fits is kept whole.
    (TRL 1.16's ``keep_end`` is something else: it cuts the joined sequence from the left, responses
    included, and is deprecated.) Differences, by design: the prompt's specials (a BOS) are kept and
    counted inside ``max_prompt_length`` (the old TRL cut a leading BOS off), and a cut response keeps
    its EOS inside the budget. Cuts are made in the text at token starts (offset mapping), so no
    character is split, and re-counted until the pair fits (re-tokenised text can merge differently).
    ``max_length=None`` cuts every prompt over ``max_prompt_length`` (no response cut).
    """
    pairs = list(pairs)
    out: list[PreferencePair] = []
    n_cut = n_resp = 0
    if not pairs:
        return out, 0, 0

    def n_head(prompt: str) -> int:
        return _n_tokens(tokenizer, [dpo_prompt_text(prompt, tokenizer)], specials=True)[0]

    def n_resp_eos(prompt: str, resp: str) -> int:  # the response's tokens in context, + the EOS TRL appends
        head = dpo_prompt_text(prompt, tokenizer)
        return _n_tokens(tokenizer, [head + resp], specials=True)[0] - n_head(prompt) + 1

    def too_long(p: PreferencePair) -> bool:
        if max_length is None:
            return n_head(p.prompt) > max_prompt_length
        return n_head(p.prompt) + max(n_resp_eos(p.prompt, p.chosen), n_resp_eos(p.prompt, p.rejected)) > max_length

    for p in pairs:
        if not too_long(p):
            out.append(p)
            continue
        if n_head(p.prompt) > max_prompt_length:
            enc = tokenizer(p.prompt, add_special_tokens=False, return_offsets_mapping=True)
            starts = [a for a, _ in enc["offset_mapping"]]
            n_special = n_head(p.prompt) - len(starts)
            if max_prompt_length - n_special < 1:
                raise ValueError(f"max_prompt_length={max_prompt_length} leaves no room for a prompt token after "
                                 f"the tokenizer's {n_special} special token(s); raise it")
            i = max(0, len(starts) - (max_prompt_length - n_special))
            text = p.prompt[starts[i]:]
            while i < len(starts) - 1 and n_head(text) > max_prompt_length:
                i += 1
                text = p.prompt[starts[i]:]
            p = dataclasses.replace(p, prompt=text)
            n_cut += 1
        if max_length is not None and too_long(p):
            budget = max_length - max_prompt_length - 1  # response tokens; + EOS = max_length - max_prompt_length
            if budget < 1:
                raise ValueError(f"max_length={max_length} leaves no room for a response after "
                                 f"max_prompt_length={max_prompt_length}; raise max_length")
            p = dataclasses.replace(p, chosen=_keep_start(tokenizer, p.prompt, p.chosen, budget),
                                    rejected=_keep_start(tokenizer, p.prompt, p.rejected, budget))
            n_resp += 1
        out.append(p)
    return out, n_cut, n_resp


def _keep_start(tokenizer: Any, prompt: str, resp: str, budget: int) -> str:
    """Return the longest token-start prefix of ``resp`` with at most ``budget`` tokens after the prompt."""
    head = dpo_prompt_text(prompt, tokenizer)
    n0 = _n_tokens(tokenizer, [head], specials=True)[0]
    enc = tokenizer(resp, add_special_tokens=False, return_offsets_mapping=True)
    starts = [a for a, _ in enc["offset_mapping"]]
    if len(starts) <= budget:
        return resp
    j = budget
    text = resp[:starts[j]]
    while j > 1 and _n_tokens(tokenizer, [head + text], specials=True)[0] - n0 > budget:
        j -= 1
        text = resp[:starts[j]]
    return text


def filter_pairs_by_tokens(pairs: Sequence[PreferencePair], tokenizer: Any, max_length: int,
                           max_prompt_length: int, *, drop: bool = True, check_prompt: bool = True,
                           ) -> tuple[list[PreferencePair], FilterReport]:
    """Return (kept pairs, report): lengths are counted in TOKENS of ``tokenizer``, never characters.

    A pair is dropped when its prompt has more than ``max_prompt_length`` tokens, or when prompt +
    chosen or prompt + rejected (+1 for the EOS the trainer appends) exceeds ``max_length``. With
    ``drop=False`` the first such pair raises a ValueError naming it instead. ``check_prompt=False``
    skips the prompt limit (after :func:`truncate_prompts_left`, a long prompt whose pair fits stays whole).
    """
    pairs = list(pairs)
    # Count exactly what TRL will tokenize: its prompt text (an empty prompt is the start token)
    # through the tokenizer's own specials, i.e. the run's tokenization rule (see
    # interp.model.tokenization and TokenRule.hf_tokenizer).
    heads = [dpo_prompt_text(p.prompt, tokenizer) for p in pairs]
    n_prompt = _n_tokens(tokenizer, heads, specials=True)
    n_full_c = _n_tokens(tokenizer, [h + p.chosen for h, p in zip(heads, pairs)], specials=True)
    n_full_r = _n_tokens(tokenizer, [h + p.rejected for h, p in zip(heads, pairs)], specials=True)
    kept: list[PreferencePair] = []
    rep = FilterReport(len(pairs), 0, 0, 0, max_length, max_prompt_length)
    for p, np_, nc, nr in zip(pairs, n_prompt, n_full_c, n_full_r):
        if check_prompt and np_ > max_prompt_length:
            if not drop:
                raise ValueError(f"{_where(p)}: prompt has {np_} tokens, more than max_prompt_length="
                                 f"{max_prompt_length}; shorten it, raise max_prompt_length, or set drop_long")
            rep.n_prompt_too_long += 1
            rep.dropped_ids.append(p.id)
        elif max(nc, nr) + 1 > max_length:
            if not drop:
                raise ValueError(f"{_where(p)}: prompt + completion has {max(nc, nr) + 1} tokens (with EOS), "
                                 f"more than max_length={max_length}; shorten it or raise max_length")
            rep.n_too_long += 1
            rep.dropped_ids.append(p.id)
        else:
            kept.append(p)
    rep.n_kept = len(kept)
    if rep.n_dropped:
        log.info("token filter: kept %d of %d pairs (%d prompts > %d tokens, %d pairs > %d tokens)",
                 rep.n_kept, rep.n_in, rep.n_prompt_too_long, max_prompt_length, rep.n_too_long, max_length)
    return kept, rep


def subsample(pairs: Sequence[PreferencePair], n: int | None, seed: int) -> list[PreferencePair]:
    """Return at most ``n`` pairs: a seeded random subset in the original order (all when ``n`` is None)."""
    if n is None or n >= len(pairs):
        return list(pairs)
    keep = sorted(random.Random(seed).sample(range(len(pairs)), n))
    return [pairs[i] for i in keep]


def split_pairs(pairs: Sequence[PreferencePair], eval_fraction: float, seed: int
                ) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Return (train, eval): a seeded split; eval gets round(fraction * n) pairs (>= 1 when fraction > 0)."""
    n = len(pairs)
    n_eval = 0 if eval_fraction <= 0 else max(1, round(eval_fraction * n))
    if n_eval >= n:
        raise ValueError(f"only {n} pairs: too few to hold out {eval_fraction:.0%} for evaluation and still train; "
                         "add pairs or set eval_fraction: 0")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    eval_idx = set(order[:n_eval])
    return ([p for i, p in enumerate(pairs) if i not in eval_idx], [p for i, p in enumerate(pairs) if i in eval_idx])


# ----------------------------------------------------------------------------- JSONL I/O
def pair_to_record(p: PreferencePair) -> dict[str, Any]:
    """Return the JSON record of a pair."""
    return {"id": p.id, "prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected, "source": p.source,
            "meta": dict(p.meta or {})}


def write_pairs_jsonl(path: str | os.PathLike[str], pairs: Iterable[PreferencePair]) -> Path:
    """Write pairs as JSONL (one record per line, atomically) and return the path."""
    return write_jsonl(path, (pair_to_record(p) for p in pairs))


def read_pairs_jsonl(path: str | os.PathLike[str]) -> list[PreferencePair]:
    """Return the pairs of a JSONL file with prompt/chosen/rejected (optional id, source, meta).

    Errors name the file, line and field: a missing file, an empty file, a missing or non-string
    field, chosen == rejected (:class:`DataFormatError`); a line that is no JSON object
    (:class:`interp.core.artifacts.InputError`, from the one JSONL reader).
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(path, "pairs file not found", hint="write one with write_pairs_jsonl or "
                              "`xdetox dpo train --save-pairs`")
    out: list[PreferencePair] = []
    from interp.core.artifacts import numbered_jsonl

    for n, obj in numbered_jsonl(path):  # bad UTF-8, bad JSON, a non-object line: InputError naming file:line
        for name in PAIR_FIELDS:
            if name not in obj:
                raise DataFormatError(path, "missing", line=n, field=name,
                                      hint="each line needs prompt, chosen and rejected")
            if not isinstance(obj[name], str):
                raise DataFormatError(path, f"must be a string, got {type(obj[name]).__name__}",
                                      line=n, field=name)
        if obj["chosen"] == obj["rejected"]:
            raise DataFormatError(path, "chosen == rejected: the pair carries no preference", line=n,
                                  field="chosen", hint="drop the line or fix it")
        meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
        meta = {**meta, "file": str(path), "line": n}
        out.append(PreferencePair(id=str(obj.get("id") or f"{path.stem}:{n}"), prompt=obj["prompt"],
                                  chosen=obj["chosen"], rejected=obj["rejected"],
                                  source=str(obj.get("source") or path.name), meta=meta))
    if not out:
        raise DataFormatError(path, "empty pairs file: no records", hint="each line must be a JSON object with "
                              "prompt, chosen and rejected")
    return out


__all__ = ["pplm_pairs", "paradetox_pairs", "onpolicy_pairs", "validate_pairs", "filter_pairs_by_tokens",
           "FilterReport", "subsample", "split_pairs", "write_pairs_jsonl", "read_pairs_jsonl", "pair_to_record"]
