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

The text is what the data root holds per language: RTP-LX *training-split* prompts
(:func:`interp.data.split.rtplx_split`, which excludes the evaluation split and translated-200). These
are held out from an evaluation over the ``eval`` split (the default), not from one over
``prompt_split: all`` (the paper preset), which also samples the training split. Optionally
(``neurons.token_language_gettext``, off by default since they are not in the data root) each
language's own system gettext strings are added (:func:`interp.data.sources.gettext_monolingual`: a
language's strings do not depend on which other languages a run asks for); the strings used are
hashed into the metadata and the neurons stage key. Token ids come from the one tokenization rule
(:mod:`interp.model.tokenization`, continuation ids: no specials).
"""
from __future__ import annotations

import hashlib
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
    from interp.data.languages import normalize_language
    from interp.model.tokenization import token_rule

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


from interp.data.sources import GETTEXT_DIR  # noqa: E402


def gettext_texts(languages: Iterable[str] | None = None, locale_dir: str | os.PathLike[str] = GETTEXT_DIR
                  ) -> dict[str, list[str]]:
    """Return each language's own gettext strings (:func:`interp.data.sources.gettext_monolingual`)."""
    from interp.data import sources

    try:
        return sources.gettext_monolingual(languages, locale_dir)
    except (OSError, ValueError):
        return {}  # no readable catalogs on this machine


def texts_sha(texts_by_language: Mapping[str, Sequence[str]]) -> str:
    """Return the sha256 of exactly these strings per language (what a stage key and manifest record)."""
    h = hashlib.sha256()
    for lang in sorted(texts_by_language):
        h.update(f"{lang}\x00{len(texts_by_language[lang])}\x00".encode())
        for t in texts_by_language[lang]:
            h.update(t.encode("utf-8") + b"\x00")
    return h.hexdigest()[:16]


def language_texts(root: str | os.PathLike[str] | None = None, languages: Iterable[str] | None = None, *,
                   gettext: bool = False, locale_dir: str | os.PathLike[str] = GETTEXT_DIR) -> dict[str, list[str]]:
    """Return each language's RTP-LX training-split text (+ its own gettext strings when ``gettext``)."""
    from interp.data import rtplx
    from interp.data import split
    from interp.data.coverage import rtplx_languages
    from interp.data.languages import normalize_languages

    langs = normalize_languages(languages, where="language_texts(languages=)")
    present = set(rtplx_languages(root))
    out: dict[str, list[str]] = {lang: [] for lang in langs}
    have = [lang for lang in langs if lang in present]
    if have:
        for p in split.rtplx_split(rtplx.load_rtplx(root, have), "train", root=root):
            out[p.lang].append(p.text)
    if gettext:
        for lang, texts in gettext_texts(langs, locale_dir).items():
            if lang in out:
                out[lang].extend(texts)
    return out


def token_languages_from_data(tokenizer: Any, root: str | os.PathLike[str] | None = None,
                              languages: Iterable[str] | None = None, *, min_count: int = MIN_COUNT,
                              gettext: bool = False, locale_dir: str | os.PathLike[str] = GETTEXT_DIR
                              ) -> TokenLanguages:
    """Return token language distributions measured on the data root's text (see the module doc).

    ``gettext`` adds each language's own system gettext strings (off by default: they are not in
    the data root); ``meta["gettext_sha"]`` then hashes exactly the strings used.
    """
    langs = list(languages) if languages is not None else None
    texts = language_texts(root, langs, gettext=False)
    meta: dict[str, Any] = {"source": "RTP-LX train split" + (" + gettext" if gettext else ""),
                            "held_out": "RTP-LX eval split and translated-200 (an evaluation over "
                                        "prompt_split 'all' also uses the train split)",
                            "gettext": bool(gettext)}
    if gettext:
        g = {lang: v for lang, v in gettext_texts(list(texts), locale_dir).items() if lang in texts}
        for lang, v in g.items():
            texts[lang].extend(v)
        meta.update(gettext_dir=str(locale_dir), gettext_sha=texts_sha(g),
                    gettext_strings={lang: len(v) for lang, v in g.items()})
    return count_token_languages(tokenizer, texts, min_count=min_count, meta=meta)


__all__ = ["TokenLanguages", "count_token_languages", "language_texts", "token_languages_from_data",
           "gettext_texts", "texts_sha",
           "UNDETERMINED", "MIN_COUNT"]
