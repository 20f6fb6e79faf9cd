"""Vocabulary projection of value vectors (paper stage 2): which tokens each toxic neuron promotes.

``W_U @ v_i`` with no final norm (as in the paper and Lee et al.; the unembedding bias is left out
too, since it shifts every vector's scores by the same amount). The top-k tokens are decoded one
by one, byte-safely: a byte-level piece that is only part of a UTF-8 character shows as ``�``
rather than failing. Each token gets a language distribution measured on data
(:mod:`interp.crosslingual.token_languages`; ``und`` when there is too little evidence), or, without data, a
script/hint-letter tag (:mod:`interp.data.scripts`), and lexicon hits (:mod:`interp.data.lexicon`).
Value-side multilinguality: the share of each vector's top-k tokens in each language (a token's
share is split by its distribution; ``und`` tokens count for no language).
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from interp.neurons.activations import as_neuron_list, tokenizer_of, validate_neurons
from interp.model.architecture import get_adapter
from interp.data.languages import LANGUAGES
from interp.model.loading import activate
from interp.data.scripts import UNDETERMINED, tag_token

REPLACEMENT = "\ufffd"


def decode_token(tokenizer: Any, token_id: int) -> tuple[str, str]:
    """Return (decoded text, raw vocabulary piece) of one token; never raises on partial UTF-8."""
    try:
        raw = tokenizer.convert_ids_to_tokens(int(token_id))
    except Exception:  # noqa: BLE001 - some tokenizers raise on unknown ids; show the id instead
        raw = None
    raw = str(raw) if raw is not None else f"<id {token_id}>"
    try:
        text = tokenizer.decode([int(token_id)], skip_special_tokens=False, clean_up_tokenization_spaces=False)
    except Exception:  # noqa: BLE001 - a decoder that cannot render a lone piece: fall back to the raw piece
        text = raw
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return text, raw


@dataclass
class VocabProjection:
    """Top-k tokens per value vector with language tags and value-side multilinguality.

    ``table``: layer, neuron, rank, token_id, token, raw, score, script, lang, languages, toxic,
    toxic_langs. ``language_mass``: one row per language (lang, value_mass, lexicon_hits): the mean
    over vectors of the share of top-k tokens in that language, and the mean number of top-k
    tokens that are lexicon hits of that language. ``per_vector``: layer, neuron, one column per
    language (its share), ``und``, n_languages (languages with a share of at least
    ``N_LANGUAGES_MIN_TOKENS``/k: half a token's worth), effective_languages, n_toxic, top_tokens.
    """

    table: Any
    language_mass: Any
    per_vector: Any
    meta: dict[str, Any] = field(default_factory=dict)

    def token_table(self, n: int | None = None) -> Any:
        """Return the paper-style table (:func:`interp.viz.figures.value_token_rows`): one row per vector,
        its top ``n`` tokens in rank order."""
        from interp.viz.figures import value_token_rows

        return value_token_rows(self.table, k=n)

    def figure(self, n: int | None = 10) -> Any:
        """Return paper Tables 3/4 for this projection (:func:`interp.viz.figures.fig_value_vector_tokens`)."""
        from interp.viz.figures import fig_value_vector_tokens

        return fig_value_vector_tokens(self.table, k=n)

    def to_html(self, n: int | None = 10) -> str:
        """Return the token table as a standalone HTML fragment (escaped, no JavaScript)."""
        t = self.token_table(n)
        body = "".join(f"<tr><td>({l}, {i})</td><td>{html.escape(b)}</td></tr>"
                       for l, i, b in zip(t["layer"], t["neuron"], t["tokens"]))
        return ("<table class='xdetox-vocab'><thead><tr><th>Value vector (layer, neuron)</th>"
                f"<th>Top tokens</th></tr></thead><tbody>{body}</tbody></table>")


def _lexicon(lexicons: Any) -> tuple[Any, str]:
    from interp.data.lexicon import Lexicon, default_lexicon

    if hasattr(lexicons, "is_toxic_token"):  # already a Lexicon
        return lexicons, "given"
    if lexicons is not None:
        return Lexicon(lexicons), "given"
    try:
        return default_lexicon(), "LDNOOBW (data root)"
    except (OSError, ValueError) as e:
        return None, f"none ({e})"


#: Tokens' worth of a vector's top-k a language needs before ``n_languages`` counts it.
N_LANGUAGES_MIN_TOKENS = 0.5


@torch.no_grad()
def project_to_vocab(model: Any, neurons: Sequence[tuple[int, int]] | Any, *, k: int = 30,
                     lexicons: dict[str, list[str]] | Any = None, token_languages: Any = None) -> VocabProjection:
    """Return the top-``k`` tokens of ``W_U v`` for each neuron's value vector, tagged by language.

    ``neurons`` is a list of (layer, neuron) pairs or a :class:`~interp.neurons.ranking.ToxicNeurons`;
    ``lexicons`` is ``{lang: [words]}`` or an :class:`interp.data.lexicon.Lexicon` (default: the LDNOOBW
    lists of the data root, if present).
    ``token_languages`` (:class:`interp.crosslingual.token_languages.TokenLanguages`, measured on data) gives
    each token's language distribution, which its share of a vector is split by (``und`` for
    tokens with too little evidence); without it the script/hint-letter tags of
    :mod:`interp.data.scripts` are used.
    """
    import pandas as pd

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    pairs = as_neuron_list(neurons)
    with activate(model) as m:
        pairs = validate_neurons(m, pairs)
        a = get_adapter(m)
        tok = tokenizer_of(m)
        layers = sorted({l for l, _ in pairs})
        V = a.vocab_vectors(layers)   # raw v; post-LN encoders: gamma * (v - mean v), see the adapter
        vecs = torch.stack([V[layers.index(l), i] for l, i in pairs])
        W_U = a.unembed_matrix().to(vecs.device)
        scores = vecs @ W_U
    kk = min(k, scores.shape[-1])
    top = torch.topk(scores, kk, dim=-1)
    lex, lex_source = _lexicon(lexicons)
    cache: dict[int, tuple[str, str, Any]] = {}
    rows, per_vector = [], []
    langs_all = tuple(token_languages.languages) if token_languages is not None else LANGUAGES
    for (layer, neuron), ids, vals in zip(pairs, top.indices.tolist(), top.values.tolist()):
        share = {lang: 0.0 for lang in (*langs_all, UNDETERMINED)}
        hits = {lang: 0 for lang in langs_all}
        for rank, (tid, s) in enumerate(zip(ids, vals), start=1):
            if tid not in cache:
                text, raw = decode_token(tok, tid)
                cache[tid] = (text, raw, tag_token(text, lex))
            text, raw, tag = cache[tid]
            if token_languages is not None:  # measured: P(lang | token) from the data's frequencies
                dist = token_languages.distribution(tid) or {UNDETERMINED: 1.0}
                tag_lang = token_languages.lang(tid)
                tag_langs = tuple(sorted((l for l, p in dist.items() if p >= 0.1 and l != UNDETERMINED),
                                         key=lambda l: -dist[l]))
            else:
                langs = tag.languages or (UNDETERMINED,)
                dist = {lang: 1.0 / len(langs) for lang in langs}
                tag_lang, tag_langs = tag.lang, tag.languages
            for lang, p in dist.items():
                share[lang] = share.get(lang, 0.0) + p / kk
            for lang in tag.toxic_languages:
                if lang in hits:
                    hits[lang] += 1
            rows.append({"layer": layer, "neuron": neuron, "rank": rank, "token_id": tid, "token": text, "raw": raw,
                         "score": float(s), "script": tag.script, "lang": tag_lang,
                         "languages": ",".join(tag_langs), "toxic": bool(tag.toxic_languages),
                         "toxic_langs": ",".join(tag.toxic_languages)})
        known = {l: v for l, v in share.items() if l != UNDETERMINED and v > 0}
        total = sum(known.values())
        entropy = -sum((v / total) * math.log(v / total) for v in known.values()) if total else 0.0
        # A language counts once it holds at least half a token's worth of the top-k (share >= 0.5/k),
        # not any sliver a measured distribution spreads over it.
        n_langs = sum(1 for v in known.values() if v >= N_LANGUAGES_MIN_TOKENS / kk - 1e-12)
        per_vector.append({"layer": layer, "neuron": neuron, **share, "n_languages": n_langs,
                           "effective_languages": math.exp(entropy) if total else 0.0,
                           "n_toxic": sum(1 for r in rows[-kk:] if r["toxic"]),
                           "top_tokens": " | ".join(r["token"] for r in rows[-min(kk, 10):]),
                           **{f"hits_{l}": hits[l] for l in langs_all}})
    table = pd.DataFrame(rows)
    pv = pd.DataFrame(per_vector)
    mass = pd.DataFrame({"lang": list(langs_all), "value_mass": [float(pv[l].mean()) for l in langs_all],
                         "lexicon_hits": [float(pv[f"hits_{l}"].mean()) for l in langs_all]})
    meta = {"k": kk, "n_vectors": len(pairs), "lexicon": lex_source, "final_norm": False, "unembed_bias": False,
            "token_languages": ("measured on data: " + str(token_languages.meta.get("source", "given texts"))
                                if token_languages is not None else "script and hint letters"),
            **({"post_ln": "centred, scaled by the block's output LayerNorm gains"} if a.spec.post_ln else {})}
    return VocabProjection(table, mass, pv, meta)


def vocabulary_toxic_share(model: Any, *, lexicons: dict[str, list[str]] | None = None, max_tokens: int = 20000,
                           seed: int = 0) -> tuple[float, int]:
    """Return (share of vocabulary tokens tagged toxic, tokens examined): the rate at which a random
    vector's top tokens would hit the lexicon, tagged exactly as :func:`project_to_vocab` tags them.

    Vocabularies larger than ``max_tokens`` are measured on a seeded uniform sample of that size.
    """
    import numpy as np

    with activate(model) as m:
        tok = tokenizer_of(m)
        n_vocab = int(get_adapter(m).unembed_matrix().shape[-1])
    ids = np.arange(n_vocab)
    if n_vocab > max_tokens:
        ids = np.sort(np.random.default_rng(seed).choice(n_vocab, size=max_tokens, replace=False))
    lex, _ = _lexicon(lexicons)
    toxic = sum(1 for tid in ids.tolist() if tag_token(decode_token(tok, tid)[0], lex).toxic_languages)
    return toxic / len(ids), len(ids)


def random_value_vectors(model: Any, layers: Sequence[int], exclude: Sequence[tuple[int, int]], n: int, *,
                         seed: int = 0) -> list[tuple[int, int]]:
    """Return ``n`` seeded random (layer, neuron) pairs from ``layers``, none of them in ``exclude``.

    The null for C2 (:func:`interp.app.verdicts.value_token_stats`): value vectors from the same layers
    as the toxic ones that were not candidates, projected and tagged exactly like them.
    """
    import numpy as np

    with activate(model) as m:
        d_mlp = int(get_adapter(m).value_vectors([int(layers[0])]).shape[1]) if len(layers) else 0
    taken = {(int(l), int(i)) for l, i in exclude}
    pool = [(int(l), i) for l in sorted(set(int(x) for x in layers)) for i in range(d_mlp) if (int(l), i) not in taken]
    if not pool:
        return []
    idx = np.random.default_rng(seed).choice(len(pool), size=min(n, len(pool)), replace=False)
    return [pool[j] for j in sorted(idx.tolist())]


__all__ = ["project_to_vocab", "VocabProjection", "decode_token", "vocabulary_toxic_share",
           "random_value_vectors"]
