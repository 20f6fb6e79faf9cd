"""Vocabulary projection: top-k of W_U v (independent check), byte-safe decoding, language tags, mass."""
from __future__ import annotations

import pytest
import torch

from interp.model.loading import wrap_bridge
from interp.data.scripts import char_script, tag_token, token_script
from interp.viz.figures import visible_token
from interp.neurons.vocab import REPLACEMENT, decode_token, project_to_vocab
from tiny_models import make_model, make_tokenizer
from interp.model.architecture import get_adapter
from interp.data.lexicon import Lexicon




LEX = {"en": ["hell", "stupid"], "ru": ["хуй"], "de": ["scheiße"], "zh": ["傻逼"]}


def test_topk_matches_independent_projection(family: str) -> None:
    hf = make_model(family, 320)
    bridge = wrap_bridge(hf, make_tokenizer())
    neurons = [(1, 3), (0, 5)]
    proj = project_to_vocab(bridge, neurons, k=12, lexicons=LEX)
    assert len(proj.table) == 24
    a = get_adapter(bridge)
    head = hf.get_output_embeddings().weight.detach()  # [vocab, d_model]
    scale = float(getattr(hf.config, "logit_scale", 1.0) or 1.0) if a.spec.logit_scale_attr else 1.0
    for layer, neuron in neurons:
        v = a.value_vectors([layer])[0, neuron]
        want = torch.topk(head @ v * scale, 12)
        got = proj.table[(proj.table.layer == layer) & (proj.table.neuron == neuron)].sort_values("rank")
        assert got.token_id.tolist() == want.indices.tolist()
        torch.testing.assert_close(torch.tensor(got.score.tolist()), want.values, atol=1e-4, rtol=1e-4)


def test_language_mass_and_figures() -> None:
    bridge = wrap_bridge(make_model("gpt2", 320), make_tokenizer())
    proj = project_to_vocab(bridge, [(1, 3), (0, 5), (1, 9)], k=30, lexicons=LEX)
    mass = proj.language_mass
    assert list(mass.columns) == ["lang", "value_mass", "lexicon_hits"] and len(mass) == 17
    # recompute from the token table: each token splits 1/k over its candidate languages
    for lang in ("en", "ru", "zh", "ja", "de"):
        per_vec = []
        for _, df in proj.table.groupby(["layer", "neuron"]):
            s = 0.0
            for langs in df["languages"]:
                cands = langs.split(",") if langs else []
                if lang in cands:
                    s += 1 / (30 * len(cands))
            per_vec.append(s)
        assert mass.set_index("lang").loc[lang, "value_mass"] == pytest.approx(sum(per_vec) / len(per_vec))
    und = proj.per_vector["und"]
    total = proj.per_vector[[c for c in mass.lang]].sum(axis=1) + und
    assert total.tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert (proj.per_vector["effective_languages"] <= proj.per_vector["n_languages"] + 1e-9).all()
    # The figure is figures.fig_value_vector_tokens of the long table: its cells are each vector's
    # top-10 tokens in rank order, rebuilt here from the table itself.
    cells = proj.figure().data[0].cells.values
    for row, ((layer, neuron), df) in enumerate(proj.table.groupby(["layer", "neuron"], sort=False)):
        want = ", ".join(visible_token(t) for t in df.sort_values("rank")["token"].head(10))
        assert (int(cells[1][row]), int(cells[2][row]), cells[3][row]) == (layer, neuron, want)
    html = proj.to_html()
    assert html.startswith("<table") and html.count("<tr>") == 4 and "<td>(1, 3)</td>" in html


def test_decode_is_byte_safe_for_every_piece() -> None:
    tok = make_tokenizer()
    texts = [decode_token(tok, i)[0] for i in range(len(tok))]
    partial = tok.convert_tokens_to_ids("ãģ")  # first two bytes of a 3-byte kana
    assert REPLACEMENT in decode_token(tok, partial)[0]
    assert decode_token(tok, partial)[1] == "ãģ"
    assert all(isinstance(t, str) for t in texts)
    tag = tag_token(decode_token(tok, partial)[0])
    assert tag.lang == "und"


@pytest.mark.parametrize("text,lang", [(" hell", "en"), ("家", "zh"), ("о", "ru"), ("ß", "de"), ("Ich", "und"),
                                       ("ない", "ja"), ("日本ない", "ja"), ("가요", "ko"), ("أريد", "ar"),
                                       ("घर", "hi"), ("już", "pl"), ("ñ", "es"), ("123", "und"), ("Ġ", "und")])
def test_tag_token(text: str, lang: str) -> None:
    assert tag_token(text, Lexicon(LEX)).lang == lang


def test_lexicon_hit_names_language() -> None:
    tag = tag_token("Scheiße", Lexicon(LEX))
    assert tag.toxic_languages == ("de",) and tag.lang == "de"
    assert tag_token("傻逼", Lexicon(LEX)).toxic_languages == ("zh",)
    assert token_script("abc дом") in ("Latin", "Cyrillic") and char_script("1") is None


def test_default_lexicon_from_data_root(data_root) -> None:
    if not (data_root / "ldnoobw").exists() and not any(data_root.glob("**/en.txt")):
        pytest.skip("no LDNOOBW lists in the data root")
    bridge = wrap_bridge(make_model("gpt2", 320), make_tokenizer())
    proj = project_to_vocab(bridge, [(0, 1)], k=5)
    assert "LDNOOBW" in proj.meta["lexicon"]


def test_bad_inputs() -> None:
    bridge = wrap_bridge(make_model("gpt2", 320), make_tokenizer())
    with pytest.raises(IndexError, match="neuron out of range"):
        project_to_vocab(bridge, [(0, 64)], lexicons=LEX)
    with pytest.raises(ValueError, match="k must be"):
        project_to_vocab(bridge, [(0, 1)], k=0, lexicons=LEX)
    with pytest.raises(ValueError, match="empty neuron list"):
        project_to_vocab(bridge, [], lexicons=LEX)
