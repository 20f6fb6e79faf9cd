"""One tokenization rule: the token ids of a text, for a given model and purpose.

Every stage that turns text into ids asks this module (probe features, the activation filter,
generation, key activations, the intervention sweep, retrieval, perplexity and the DPO pair
lengths), so all of them see the same ids for the same text.

Purposes
--------
* ``"prompt"``: the start of a sequence the model continues. ``[BOS] + ids(text)``; an empty
  text becomes the start token alone (BOS, else EOS), so a continuation always has a position to
  be predicted from. Too long a prompt is cut from the *left* (the end is what the model
  continues), keeping the BOS.
* ``"continuation"``: text appended after a prompt: ``ids(text)``, never a special token.
* ``"sentence"``: a standalone text encoded for a representation (probe, retrieval):
  ``[BOS] + ids(text)``, cut from the right. :meth:`TokenRule.content_mask` marks the positions
  that are not special tokens, for pools that must leave them out.

The BOS policy
--------------
One explicit setting per run (``RunConfig.bos``, recorded in every manifest):

* ``"auto"``: do what the model's *own* tokenizer does, i.e. the tokenizer as shipped with the
  checkpoint (mGPT and BLOOM add no BOS; Llama and Aya do). TransformerLens re-opens tokenizers
  with BOS forced on, so the native behaviour is read before that (see
  :func:`interp.model.loading.wrap_bridge`) and kept in the model's :class:`interp.model.record.ModelRecord`.
* ``"always"`` / ``"never"``: prepend BOS to every prompt and sentence, or never.

The text itself is always encoded without the tokenizer's own specials; the rule adds them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

from interp.model.record import model_record, underlying

BosPolicy = Literal["auto", "always", "never"]
Purpose = Literal["prompt", "continuation", "sentence"]
BOS_POLICIES: tuple[str, ...] = ("auto", "always", "never")
PURPOSES: tuple[str, ...] = ("prompt", "continuation", "sentence")



def check_policy(policy: str, *, where: str = "bos") -> str:
    """Return ``policy`` if it is a BOS policy, else raise a ValueError naming ``where``."""
    if policy not in BOS_POLICIES:
        raise ValueError(f"{where}: BOS policy must be one of {', '.join(BOS_POLICIES)}, got {policy!r}")
    return policy


def native_adds_bos(tokenizer: Any) -> bool:
    """Return whether ``tokenizer`` prepends its BOS token when called with its defaults."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    probe = "a"
    with_sp = list(tokenizer(probe)["input_ids"])
    bare = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    return len(with_sp) > len(bare) and with_sp[0] == bos



def set_bos_policy(model: Any, policy: str) -> Any:
    """Record the run's BOS policy on ``model`` (bridge or ModelView) and return the model."""

    model_record(underlying(model)).bos_policy = check_policy(policy)
    return model


def bos_policy_of(model: Any) -> str:
    """Return the BOS policy recorded on ``model`` (``"auto"`` when none was set)."""

    return str(model_record(underlying(model)).bos_policy or "auto")


def context_length(model: Any) -> int | None:
    """Return the number of positions the model accepts, or None when its config does not say."""
    from interp.model.architecture import hf_model_of

    try:
        cfg = hf_model_of(underlying(model)).config
    except TypeError:
        return None
    for attr in ("max_position_embeddings", "n_positions", "seq_length"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


@dataclass(frozen=True)
class TokenRule:
    """The ids of texts for one model under one BOS policy (see the module doc)."""

    tokenizer: Any
    policy: str
    add_bos: bool
    native_bos: bool
    add_eos: bool = False   # encoders (BERT/XLM-R/e5) read "<s> text </s>": EOS/SEP closes prompts and sentences

    @property
    def bos_id(self) -> int | None:
        return getattr(self.tokenizer, "bos_token_id", None)

    @property
    def start_id(self) -> int:
        """Return the token an empty prompt becomes (BOS, else EOS)."""
        tid = self.bos_id if self.bos_id is not None else getattr(self.tokenizer, "eos_token_id", None)
        if tid is None:
            raise ValueError("the tokenizer has neither a BOS nor an EOS token; an empty prompt has no start token")
        return int(tid)

    def text_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Return the bare ids of each text (no special tokens added)."""
        if not texts:
            return []
        return [list(x) for x in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def ids(self, text: str, purpose: Purpose = "prompt", *, max_length: int | None = None) -> list[int]:
        """Return the ids of one text for ``purpose`` (cut to ``max_length`` as the purpose says)."""
        return self.encode([text], purpose, max_length=max_length)[0][0]

    def encode(self, texts: Sequence[str], purpose: Purpose = "prompt", *, max_length: int | None = None
               ) -> tuple[list[list[int]], list[int]]:
        """Return (ids per text, indices of the texts that were truncated to ``max_length``)."""
        if purpose not in PURPOSES:
            raise ValueError(f"purpose must be one of {', '.join(PURPOSES)}, got {purpose!r}")
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts, got a single string; wrap it in a list")
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        out: list[list[int]] = []
        truncated: list[int] = []
        eos = getattr(self.tokenizer, "eos_token_id", None)
        for i, body in enumerate(self.text_ids(texts)):
            head: list[int] = []
            tail: list[int] = [int(eos)] if self.add_eos and eos is not None and purpose != "continuation" else []
            if purpose != "continuation" and self.add_bos and self.bos_id is not None:
                head = [int(self.bos_id)]
            if purpose == "prompt" and not head and not body:
                head = [self.start_id]
            if max_length is not None and len(head) + len(body) + len(tail) > max_length:
                room = max(max_length - len(head) - len(tail), 0)
                if purpose == "prompt":       # keep the end: it is what the model continues
                    body = body[len(body) - room:] if room else []
                    if not head and not body:
                        body = [self.start_id]
                else:                         # keep the start
                    body = body[:room]
                truncated.append(i)
            out.append(head + body + tail)
        return out, truncated

    def special_ids(self) -> set[int]:
        """Return the tokenizer's special token ids."""
        return {int(i) for i in (getattr(self.tokenizer, "all_special_ids", None) or [])}

    def content_mask(self, ids: Sequence[int]) -> list[bool]:
        """Return True where ``ids`` holds a non-special token (all True if every token is special)."""
        special = self.special_ids()
        mask = [int(t) not in special for t in ids]
        return mask if any(mask) else [True] * len(mask)

    def hf_tokenizer(self) -> Any:
        """Return the tokenizer set up so that ``tokenizer(text)`` gives this rule's prompt ids.

        For libraries that tokenize text themselves (TRL's DPO trainer): ``add_bos_token`` is
        set to the rule's choice on the (shared) tokenizer object.
        """
        tok = self.tokenizer
        if self.add_bos != native_adds_bos(tok):
            try:
                tok.add_bos_token = self.add_bos
            except (AttributeError, ValueError) as e:  # pragma: no cover - slow tokenizers without the switch
                raise ValueError(f"bos={self.policy!r}: this tokenizer ({type(tok).__name__}) cannot switch BOS "
                                 "on or off; use bos: auto") from e
            if native_adds_bos(tok) != self.add_bos:
                raise ValueError(f"bos={self.policy!r}: could not make {type(tok).__name__} "
                                 f"{'add' if self.add_bos else 'drop'} BOS; use bos: auto")
        return tok

    def describe(self) -> dict[str, Any]:
        """Return the rule as manifest fields."""
        return {"bos_policy": self.policy, "adds_bos": self.add_bos, "native_bos": self.native_bos,
                "bos_token_id": self.bos_id, **({"adds_eos": True} if self.add_eos else {})}


def token_rule(model: Any = None, *, tokenizer: Any = None, policy: str | None = None) -> TokenRule:
    """Return the tokenization rule of ``model`` (a bridge, ModelView or HF model with ``tokenizer``).

    ``policy`` overrides the one recorded on the model (:func:`set_bos_policy`; default ``auto``).
    """
    holder = underlying(model) if model is not None else None
    tok = tokenizer if tokenizer is not None else getattr(holder, "tokenizer", None)
    if tok is None:
        raise ValueError("no tokenizer: pass tokenizer= with a plain HF model (a TransformerBridge carries one)")
    pol = check_policy(policy if policy is not None else (bos_policy_of(holder) if holder is not None else "auto"))
    # The bridge's own tokenizer object was re-opened by TransformerLens with BOS forced on: passing it
    # explicitly must not turn ``auto`` into BOS-on, so its native behaviour is the one recorded at wrap time.
    own = tokenizer is None or (holder is not None and tokenizer is getattr(holder, "tokenizer", None))
    if own and holder is not None:
    
        native = model_record(holder).native_bos
    else:
        native = None
    if native is None:
        native = native_adds_bos(tok)
    add = {"auto": bool(native), "always": True, "never": False}[pol]
    add_eos = False
    if holder is not None:  # the family decides: encoders close every input with EOS/SEP
        from interp.model.architecture import UnsupportedArchitectureError, get_adapter

        try:
            add_eos = get_adapter(holder).spec.appends_eos and getattr(tok, "eos_token_id", None) is not None
        except (TypeError, UnsupportedArchitectureError):
            add_eos = False
    return TokenRule(tokenizer=tok, policy=pol, add_bos=add and getattr(tok, "bos_token_id", None) is not None,
                     native_bos=bool(native), add_eos=add_eos)


__all__ = ["TokenRule", "token_rule", "tokenizer_fingerprint", "native_adds_bos", "set_bos_policy", "bos_policy_of", "check_policy",
           "context_length", "BOS_POLICIES", "PURPOSES"]


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Return a short hash of what a tokenizer does: its backend JSON (vocabulary, normaliser, pre-
    tokenizer, post-processor) for a fast tokenizer, else its class, size and vocabulary.

    Part of the feature-cache key, so that a tokenizer rebuilt differently over unchanged weights
    (e.g. a bumped e5 converter) does not reuse features computed with the old one.
    """
    import hashlib
    import json

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        text = backend.to_str()
    else:
        vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
        text = json.dumps([type(tokenizer).__name__, len(tokenizer), sorted(vocab.items())], default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
