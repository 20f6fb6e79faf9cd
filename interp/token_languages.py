"""Token languages from data: how often each vocabulary token occurs in each language's text.

The old rule tagged a token by its script and a few hint letters, so every Latin-script token
without a hint (" sex", " porn") was English-or-anything and ``value_mass`` mostly measured Latin
versus non-Latin script. Here a token's language distribution is measured:

* ``rate_l(t)`` = occurrences of token ``t`` in language ``l``'s text / all tokens of that text;
* ``P(l | t) = rate_l(t) / sum_l' rate_l'(t)`` over the languages asked for (a run's
  languages): every language gets the same prior, so a language with more text does not win by
  volume;
* a token seen fewer than ``min_count`` times over all languages is **undetermined** (``und``):
  too little evidence to say.

The text is what the data root holds per language, with every evaluation text held out: RTP-LX
*training-split* prompts (:func:`interp.data.rtplx_split`, which also excludes translated-200)
and gettext strings (msgstr per language, msgid for English) from ``/usr/share/locale``. Token ids
come from the one tokenization rule (:mod:`interp.tokenization`, continuation ids: no specials).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

UNDETERMINED = "und"
#: Default evidence needed before a token gets a language distribution.
MIN_COUNT = 5


@dataclass
class TokenLanguages:
    """Per-language token counts and the language distribution they imply (see the module doc)."""

    languages: tuple[str, ...]
    counts: np.ndarray            # [n_languages, vocab] token occurrences
    totals: np.ndarray            # [n_languages] tokens of text per language
    min_count: int = MIN_COUNT
    meta: dict[str, Any] = field(default_factory=dict)

    def evidence(self, token_id: int) -> int:
        """Return how often the token occurs over all languages' text."""
        t = int(token_id)
        return int(self.counts[:, t].sum()) if 0 <= t < self.counts.shape[1] else 0

    def distribution(self, token_id: int) -> dict[str, float]:
        """Return ``{lang: P(lang | token)}`` (summing to 1), or ``{}`` when undetermined."""
        t = int(token_id)
        if self.evidence(t) < self.min_count:
            return {}
        rates = self.counts[:, t] / np.maximum(self.totals, 1)
        p = rates / rates.sum()
        return {lang: float(v) for lang, v in zip(self.languages, p) if v > 0}

    def lang(self, token_id: int, threshold: float = 0.5) -> str:
        """Return the token's language when one has at least ``threshold`` of it, else ``und``."""
        d = self.distribution(token_id)
        if not d:
            return UNDETERMINED
        best = max(d, key=d.get)  # type: ignore[arg-type]
        return best if d[best] >= threshold else UNDETERMINED


def count_token_languages(tokenizer: Any, texts_by_language: Mapping[str, Sequence[str]], *,
                          min_count: int = MIN_COUNT, meta: dict[str, Any] | None = None) -> TokenLanguages:
    """Return the :class:`TokenLanguages` of ``texts_by_language`` under ``tokenizer``."""
    from interp.languages import normalize_language
    from interp.tokenization import token_rule

    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    if not texts_by_language:
        raise ValueError("texts_by_language is empty; pass {lang: [texts]}")
    rule = token_rule(tokenizer=tokenizer, policy="never")
    vocab = len(tokenizer)
    langs = tuple(normalize_language(lang, where="texts_by_language") for lang in texts_by_language)
    counts = np.zeros((len(langs), vocab), dtype=np.int64)
    for row, texts in enumerate(texts_by_language.values()):
        ids = [t for seq in rule.text_ids([x for x in texts if x]) for t in seq if 0 <= t < vocab]
        if ids:
            counts[row] = np.bincount(np.asarray(ids, dtype=np.int64), minlength=vocab)[:vocab]
    totals = counts.sum(axis=1)
    info = {"n_texts": {lang: len(v) for lang, v in zip(langs, texts_by_language.values())},
            "n_tokens": {lang: int(n) for lang, n in zip(langs, totals)}, "min_count": min_count, **(meta or {})}
    return TokenLanguages(langs, counts, totals, min_count, info)


def language_texts(root: str | os.PathLike[str] | None = None, languages: Iterable[str] | None = None, *,
                   gettext: bool = True) -> dict[str, list[str]]:
    """Return the held-out-safe text of each language: RTP-LX training split (+ gettext strings)."""
    from interp import data
    from interp.coverage import rtplx_languages
    from interp.languages import normalize_languages

    langs = normalize_languages(languages, where="language_texts(languages=)")
    present = set(rtplx_languages(root))
    out: dict[str, list[str]] = {lang: [] for lang in langs}
    have = [lang for lang in langs if lang in present]
    if have:
        for p in data.rtplx_split(data.load_rtplx(root, have), "train", root=root):
            out[p.lang].append(p.text)
    if gettext:
        try:
            for lang, texts in data.gettext_parallel(langs).items():
                if lang in out:
                    out[lang].extend(texts)
        except (OSError, ValueError):
            pass  # no gettext catalogs on this machine: RTP-LX alone
    return out


def token_languages_from_data(tokenizer: Any, root: str | os.PathLike[str] | None = None,
                              languages: Iterable[str] | None = None, *, min_count: int = MIN_COUNT,
                              gettext: bool = True) -> TokenLanguages:
    """Return token language distributions measured on the data root's text (see the module doc)."""
    texts = language_texts(root, languages, gettext=gettext)
    return count_token_languages(tokenizer, texts, min_count=min_count,
                                 meta={"source": "RTP-LX train split" + (" + gettext" if gettext else ""),
                                       "held_out": "RTP-LX eval split and translated-200"})


__all__ = ["TokenLanguages", "count_token_languages", "language_texts", "token_languages_from_data",
           "UNDETERMINED", "MIN_COUNT"]
