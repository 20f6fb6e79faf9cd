"""Next-token NLL of texts under a causal LM: the one LM-loss implementation.

:func:`continuation_nll` scores continuation tokens given a prompt (conditional perplexity of
evaluation samples); :func:`text_nll` scores texts continuing an empty prompt, and :func:`lm_loss`
is its token-weighted mean (the held-out LM loss of DPO runs, algorithm comparisons and the
default model). All use the run's tokenization rule (:mod:`interp.model.tokenization`), right-padded
batches and fp32 log-softmax.
The training loop's own validation loss over fixed token blocks (``default_model.eval_loss``) is
nanoGPT's estimate on the training stream, not a loss of texts.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from jaxtyping import Float


@torch.no_grad()
def continuation_nll(model: Any, prompts: Sequence[str], continuations: Sequence[str], *, tokenizer: Any = None,
                     batch_size: int = 16, max_length: int | None = None) -> list[tuple[float, int]]:
    """Return (summed NLL in nats, n continuation tokens) per pair, scoring continuation tokens given the prompt.

    The sequence is the prompt's ids followed by the continuation's ids, both from the run's
    tokenization rule (:mod:`interp.model.tokenization`: BOS by its policy, an empty prompt becomes the
    start token); a sequence longer than the model's context (or ``max_length``) keeps the
    continuation's start and the prompt's end. Right-padded batches. ``model`` may be a
    :class:`interp.model.loading.ModelView` (e.g. the adapter-disabled base of a LoRA run): it is scored
    in that view's adapter state.
    """
    from interp.model.architecture import hf_model_of
    from interp.model.views import ModelView, activate
    from interp.model.tokenization import context_length, token_rule

    if len(prompts) != len(continuations):
        raise ValueError(f"got {len(prompts)} prompts but {len(continuations)} continuations")
    if isinstance(model, ModelView):
        with activate(model) as inner:
            return continuation_nll(inner, prompts, continuations, tokenizer=tokenizer, batch_size=batch_size,
                                    max_length=max_length)
    hf = hf_model_of(model)
    tok = tokenizer or getattr(model, "tokenizer", None)
    if tok is None:
        raise ValueError("no tokenizer: pass tokenizer= with a plain HF judge model")
    device = next(hf.parameters()).device
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    rule = token_rule(model, tokenizer=tokenizer)
    limit = context_length(model)
    if max_length is not None:
        limit = max_length if limit is None else min(limit, max_length)
    out: list[tuple[float, int]] = []
    for s in range(0, len(prompts), batch_size):
        seqs, starts = [], []
        for p, c in zip(prompts[s:s + batch_size], continuations[s:s + batch_size]):
            ci = rule.ids(c, "continuation") if c else []
            if limit is not None:
                ci = ci[:limit - 1]
            pi = rule.ids(p, "prompt", max_length=None if limit is None else max(limit - len(ci), 1))
            seqs.append(pi + ci)
            starts.append(len(pi))
        width = max(len(x) for x in seqs)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, x in enumerate(seqs):
            ids[i, :len(x)] = torch.tensor(x)
            mask[i, :len(x)] = 1
        logits: Float[torch.Tensor, "batch pos vocab"] = hf(input_ids=ids.to(device),
                                                             attention_mask=mask.to(device)).logits.float()
        logp = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1).cpu()
        for i, x in enumerate(seqs):
            st, end = starts[i], len(x)  # continuation tokens sit at positions st..end-1
            out.append((float(-logp[i, st - 1:end - 1].sum()), end - st))
    return out


def text_nll(model: Any, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 16,
             max_length: int = 256) -> list[tuple[float, int]]:
    """Return (summed NLL in nats, scored tokens) per text, each text continuing an empty prompt.

    :func:`continuation_nll` with empty prompts (the empty prompt is BOS, else the start token),
    each sequence cut from the right to ``max_length`` tokens in all; the model is scored in eval
    mode and put back in the mode it was in (a DPO run calls this mid-training).
    """
    was_training = model.training
    model.eval()
    try:
        return continuation_nll(model, [""] * len(texts), list(texts), tokenizer=tokenizer, batch_size=batch_size,
                                max_length=max_length)
    finally:
        model.train(was_training)


def lm_loss(model: Any, tokenizer: Any, texts: Sequence[str], *, batch_size: int = 16,
            max_length: int = 256) -> float:
    """Return the mean next-token NLL (nats/token, token-weighted) of ``texts`` after a start token
    (:func:`text_nll`'s sums over its token counts)."""
    scored = text_nll(model, tokenizer, texts, batch_size=batch_size, max_length=max_length)
    return sum(nll for nll, _ in scored) / max(sum(n for _, n in scored), 1)


__all__ = ["continuation_nll", "text_nll", "lm_loss"]
