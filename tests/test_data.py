"""Data loaders: counts on the real shared data, alignment, hold-out split, and bad input."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from test_data_helpers import make_mini_root, rtplx_row, write_encrypted_zip, write_jsonl

from interp.data import records, sources, split
from interp.data import rtplx as rtplx_mod
from interp.data.languages import LANGUAGES, UnknownLanguageError

RTPLX_ROWS = {"ar": 1051, "cs": 1038, "de": 1029, "en": 999, "es": 1098, "fr": 1038, "hi": 1115, "id": 1099,
              "it": 1113, "ja": 1070, "ko": 1099, "nl": 1075, "pl": 1099, "pt": 1095, "ru": 1225, "sv": 1049,
              "zh": 1036}
# DATA.md/SOURCE.txt give `wc -l` counts; ar.txt lacks a final newline (38 entries) and zh.txt
# repeats one entry (318 distinct).
LEXICON_ENTRIES = {"ar": 38, "cs": 41, "de": 66, "en": 403, "es": 68, "fr": 91, "hi": 119, "it": 168, "ja": 180,
                   "ko": 72, "nl": 190, "pl": 54, "pt": 76, "ru": 151, "sv": 43, "zh": 318}


@pytest.fixture(scope="module")
def rtplx(data_root: Path) -> list[records.Prompt]:
    return rtplx_mod.load_rtplx(data_root)


# ----------------------------------------------------------------------------- real data


def test_rtplx_counts_and_fields(rtplx: list[records.Prompt]) -> None:
    assert Counter(p.lang for p in rtplx) == RTPLX_ROWS
    assert len({p.id for p in rtplx}) == len(rtplx)
    assert all(isinstance(p.index, int) and p.group == p.index for p in rtplx)
    assert all(1.0 <= p.toxicity <= 5.0 for p in rtplx)
    assert all(p.id == f"rtplx:{p.lang}:{p.index}" for p in rtplx)
    ann = rtplx_mod.rtplx_annotations(rtplx[:3])
    assert set(ann[rtplx[0].id]) >= {"Toxicity", "Insult", "IdentityAttack"}
    assert ann[rtplx[0].id]["Toxicity"] == rtplx[0].toxicity


def test_rtplx_language_subset(data_root: Path) -> None:
    ps = rtplx_mod.load_rtplx(data_root, ["ZH-Hans", "zh_CN", "EN"])
    assert Counter(p.lang for p in ps) == {"zh": 1036, "en": 999}


def test_alignment_on_real_data(rtplx: list[records.Prompt]) -> None:
    aligned, rep = rtplx_mod.align_by_index(rtplx)
    # 960 is missing in 7 languages; there 961..998 carry the English prompt of index-1.
    assert rep.missing == {960: ("ar", "cs", "de", "es", "fr", "it", "zh")}
    for lang in ("ar", "cs", "de", "es", "fr", "it", "zh"):
        assert rep.shifted[lang] == tuple(range(961, 999))
    for lang in ("en", "hi", "id", "ja", "ko", "nl", "pl", "pt", "ru", "sv"):
        assert not rep.shifted.get(lang)
    assert 998 not in aligned and 960 not in aligned and 0 in aligned
    assert all(len(row) == 17 for row in aligned.values())
    assert 940 <= rep.n_kept <= 960
    assert sum(rep.extras.values()) == sum(RTPLX_ROWS.values()) - sum(
        1 for p in rtplx if p.index < rtplx_mod.RTPLX_N_TRANSLATED)


def test_translated_200(data_root: Path) -> None:
    t = rtplx_mod.load_translated_200(data_root)
    assert set(t) == set(LANGUAGES) and all(len(v) == 200 for v in t.values())
    assert not any("&quot;" in p.text or "&amp;" in p.text for v in t.values() for p in v)
    # every English line is an RTP-LX English prompt; its Index is carried on every language's line
    assert all(p.index is not None for p in t["en"])
    assert [p.index for p in t["de"]] == [p.index for p in t["en"]]
    assert t["zh"][5].id == "t200:zh:5" and t["zh"][5].group == 5


def test_paradetox(data_root: Path) -> None:
    rows = sources.load_paradetox(data_root)
    # 11,935 physical data lines (DATA.md); 8 continue a quoted multi-line cell -> 11,927 rows
    lines = (data_root / "paradetox-en" / "paradetox.tsv").read_text(encoding="utf-8").count("\n") - 1
    assert lines == 11935
    assert len(rows) == 11927
    assert all(1 <= len(r.neutrals) <= 3 and r.toxic for r in rows)
    assert sum(len(r.neutrals) for r in rows) == 19743
    labeled = sources.paradetox_labeled(data_root)
    assert len(labeled) == 11927 + 19743
    assert Counter(x.label for x in labeled) == {1: 11927, 0: 19743}


def test_davidson(data_root: Path) -> None:
    rows = sources.load_davidson(data_root)
    assert len(rows) == 24783
    assert Counter(r.source for r in rows) == {"davidson:class0": 1430, "davidson:class1": 19190,
                                               "davidson:class2": 4163}
    assert sum(r.label for r in rows) == 1430 + 19190


def test_jigsaw_sample(data_root: Path) -> None:
    rows = sources.load_jigsaw_sample(data_root)
    assert len(rows) == 101 and sum(r.label for r in rows) == 13
    multi = sources.load_jigsaw(data_root / "jigsaw-sample-ibm-max" / "test_examples.csv",
                          label_columns=("toxic", "obscene", "insult"))
    assert sum(r.label for r in multi) >= 13


def test_lexicons(data_root: Path) -> None:
    lex = sources.load_lexicons(data_root)
    assert {k: len(v) for k, v in lex.items()} == LEXICON_ENTRIES
    assert "id" not in lex


# ----------------------------------------------------------------------------- hold-out split


def test_is_eval_index_deterministic_and_fraction() -> None:
    idx = range(0, 1600)
    first = [split.is_eval_index(i) for i in idx]
    assert first == [split.is_eval_index(i) for i in idx]
    assert 0.25 < sum(first[:999]) / 999 < 0.35
    assert 0.2 < sum(first[999:]) / 601 < 0.4


def test_split_disjoint_and_heldout_covers_t200(data_root: Path, rtplx: list[records.Prompt]) -> None:
    ev = split.rtplx_split(rtplx, "eval", root=data_root)
    tr = split.rtplx_split(rtplx, "train", root=data_root)
    assert {p.id for p in ev}.isdisjoint({p.id for p in tr})
    assert len(ev) + len(tr) == len(rtplx)
    # same indices in every language
    ev_idx = {lang: {p.index for p in ev if p.lang == lang and p.index < 999} for lang in ("en", "de", "ja")}
    assert ev_idx["en"] - {960} == ev_idx["de"] - {960} and ev_idx["en"] == ev_idx["ja"]
    t200 = rtplx_mod.load_translated_200(data_root)
    t200_idx = {p.index for p in t200["en"]}
    assert t200_idx == split.t200_indices(data_root) and len(t200_idx) == 200
    assert t200_idx <= ev_idx["en"]
    held = split.heldout_texts(data_root)
    assert all(records.normalize_text(p.text) in held for v in t200.values() for p in v)
    assert all(records.normalize_text(p.text) in held for p in ev)
    train_texts = {records.normalize_text(p.text) for p in tr if p.lang == "en"}
    assert train_texts.isdisjoint({records.normalize_text(p.text) for p in t200["en"]})
    with pytest.raises(ValueError, match="split"):
        split.rtplx_split(rtplx, "test")  # type: ignore[arg-type]


def test_normalize_text() -> None:
    assert records.normalize_text("  Hello&quot;  WORLD\n") == 'hello" world'
    assert records.normalize_text("ＡＢＣ") == "abc"


# ----------------------------------------------------------------------------- gettext


def test_gettext_parallel() -> None:
    locale = Path("/usr/share/locale")
    if not any(locale.glob("*/LC_MESSAGES/*.mo")):
        pytest.skip("no gettext catalogs installed")
    g = sources.gettext_parallel(["en", "de", "fr"])
    assert set(g) == {"en", "de", "fr"}
    n = len(g["en"])
    assert n > 0 and len(g["de"]) == len(g["fr"]) == n
    for en, de in zip(g["en"], g["de"]):
        assert len(en.split()) >= 4 and "%" not in en and "%" not in de and en != de


def test_gettext_from_handmade_catalogs(tmp_path: Path) -> None:
    def write_mo(path: Path, messages: dict[str, str]) -> None:
        import struct

        keys = sorted(messages)
        ids = b"".join(k.encode() + b"\0" for k in keys)
        strs = b"".join(messages[k].encode() + b"\0" for k in keys)
        n = len(keys)
        koff, voff = 28, 28 + 8 * n
        ids_start, strs_start = 28 + 16 * n, 28 + 16 * n + len(ids)
        table_k, table_v, pos = b"", b"", 0
        for k in keys:
            table_k += struct.pack("<II", len(k.encode()), ids_start + pos)
            pos += len(k.encode()) + 1
        pos = 0
        for k in keys:
            table_v += struct.pack("<II", len(messages[k].encode()), strs_start + pos)
            pos += len(messages[k].encode()) + 1
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(struct.pack("<IIIIIII", 0x950412DE, 0, n, koff, voff, 0, 0) + table_k + table_v + ids + strs)

    write_mo(tmp_path / "de" / "LC_MESSAGES" / "a.mo",
             {"Open the file now please": "Bitte jetzt die Datei öffnen", "Too short": "Zu kurz",
              "Copied 5% of the data": "5% kopiert", "Same text in both cases": "Same text in both cases",
              "Only in German catalog here": "Nur im deutschen Katalog"})
    write_mo(tmp_path / "pt_BR" / "LC_MESSAGES" / "a.mo",
             {"Open the file now please": "Abra o arquivo agora"})
    g = sources.gettext_parallel(["de", "pt", "en"], locale_dir=tmp_path)
    assert g == {"de": ["Bitte jetzt die Datei öffnen"], "pt": ["Abra o arquivo agora"],
                 "en": ["Open the file now please"]}
    assert sources.gettext_parallel(["de"], locale_dir=tmp_path / "nowhere") == {"de": []}


# ----------------------------------------------------------------------------- PPLM pairs


def test_pplm_pairs_strip_prefix(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "pairs.jsonl", [
        {"prompt_text": "The cat", "unpert_gen_text": "The cat sat down.", "pert_gen_text": "The cat is awful",
         "pert_gen_toks": [1, 2]},
        {"prompt_text": "A dog", "unpert_gen_text": " ran home", "pert_gen_text": " bit me"},
    ])
    pairs, n = sources.load_pplm_pairs(path)
    assert n == 1
    assert (pairs[0].prompt, pairs[0].chosen, pairs[0].rejected) == ("The cat", " sat down.", " is awful")
    assert (pairs[1].chosen, pairs[1].rejected) == (" ran home", " bit me")
    assert pairs[0].meta["prefix_stripped"] and not pairs[1].meta["prefix_stripped"]
    assert pairs[0].id == "pplm:1" and pairs[0].source == "pplm"


# ----------------------------------------------------------------------------- zip release


def test_rtplx_password_zip(tmp_path: Path) -> None:
    body = "".join(json.dumps(rtplx_row(i, "EN", f"prompt {i}")) + "\n" for i in range(3)).encode()
    zpath = write_encrypted_zip(tmp_path / "RTP-LX.zip", {"RTP-LX/RTP_LX_EN.json": body,
                                                           "RTP-LX/RTP_LX_HE.json": b"{}\n"}, b"s3cret")
    ps = rtplx_mod.load_rtplx(languages=["en"], zip_path=zpath, password="s3cret")
    assert [p.id for p in ps] == ["rtplx:en:0", "rtplx:en:1", "rtplx:en:2"]
    with pytest.raises(records.DataFormatError, match="password") as e:
        rtplx_mod.load_rtplx(languages=["en"], zip_path=zpath, password="wrong-pw")
    assert "wrong-pw" not in str(e.value)
    with pytest.raises(records.DataFormatError, match="RTP_LX_DE"):
        rtplx_mod.load_rtplx(languages=["de"], zip_path=zpath, password="s3cret")


def test_rtplx_zip_wrong_password_past_the_check_byte(tmp_path: Path) -> None:
    """ZipCrypto checks one byte: a wrong password that passes it fails later (bad CRC); say 'password'."""
    import zipfile

    body = "".join(json.dumps(rtplx_row(i, "EN", f"prompt {i}")) + "\n" for i in range(3)).encode()
    zpath = write_encrypted_zip(tmp_path / "RTP-LX.zip", {"RTP-LX/RTP_LX_EN.json": body}, b"s3cret")
    zf = zipfile.ZipFile(zpath)
    sneaky = None
    for i in range(5000):  # about 1 in 256 passes the check byte
        try:
            zf.read(zf.infolist()[0], pwd=f"wrong-{i}".encode())
        except RuntimeError:
            continue
        except Exception:  # noqa: BLE001 - the later failure we want
            sneaky = f"wrong-{i}"
            break
    assert sneaky is not None
    with pytest.raises(records.DataFormatError, match="wrong password") as e:
        rtplx_mod.load_rtplx(languages=["en"], zip_path=zpath, password=sneaky)
    assert sneaky not in str(e.value)


# ----------------------------------------------------------------------------- synthetic root


def test_mini_root_loads(tmp_path: Path) -> None:
    root = make_mini_root(tmp_path)
    assert len(rtplx_mod.load_rtplx(root)) == 17 * 12
    t = rtplx_mod.load_translated_200(root)
    assert t["de"][0].text == 'de line 0 "q"' and t["en"][1].index == 1
    rows = sources.load_paradetox(root)
    assert [r.neutrals for r in rows] == [("you",), (), ("polite one", "spans\nlines")]
    assert [r.id for r in rows] == ["paradetox:2", "paradetox:3", "paradetox:4"]


def test_align_detects_shift_and_outlier(tmp_path: Path) -> None:
    import random

    rng = random.Random(0)
    lengths = [rng.randint(10, 120) for _ in range(40)]
    en = [records.Prompt(f"rtplx:en:{i}", "en", "e" * n, i, 1.0, "rtplx", i) for i, n in enumerate(lengths)]
    # German: index 20 missing, 21..39 carry the English prompt i-1; index 5 is 10x too long
    de_len = {i: n for i, n in enumerate(lengths) if i < 20}
    de_len.update({i: lengths[i - 1] for i in range(21, 40)})
    de_len[5] = lengths[5] * 10
    de = [records.Prompt(f"rtplx:de:{i}", "de", "d" * n, i, 1.0, "rtplx", i) for i, n in de_len.items()]
    extra = [records.Prompt("rtplx:de:1200", "de", "x", 1200, 1.0, "rtplx", 1200)]
    aligned, rep = rtplx_mod.align_by_index(en + de + extra)
    assert rep.missing == {20: ("de",)}
    assert rep.shifted["de"] == tuple(range(21, 40))
    assert rep.outliers["de"] == (5,)
    assert sorted(aligned) == [i for i in range(20) if i != 5]
    assert rep.extras == {"de": 1}
    loose, _ = rtplx_mod.align_by_index(en + de, require_all=False)
    assert set(loose[25]) == {"en"}


# ----------------------------------------------------------------------------- bad input


def _rtplx_root(tmp_path: Path, lines: list[str], name: str = "RTP_LX_EN.jsonl") -> Path:
    folder = tmp_path / "rtp-lx-v0.2"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return tmp_path


GOOD = json.dumps(rtplx_row(0, "EN", "fine"))


@pytest.mark.parametrize("lines, pattern", [
    ([GOOD, '{"Prompt": "x", "Index": 1,'], r"RTP_LX_EN.jsonl:2: bad JSON"),
    ([GOOD, json.dumps({k: v for k, v in rtplx_row(1, "EN", "x").items() if k != "Prompt"})],
     r"RTP_LX_EN.jsonl:2: field 'Prompt': missing field"),
    ([json.dumps(rtplx_row("abc", "EN", "x"))], r"RTP_LX_EN.jsonl:1: field 'Index': expected an integer"),
    ([json.dumps(rtplx_row(0, "EN", "x", tox=9.0))], r":1: field 'Annotations.Toxicity': .*1..5"),
    ([json.dumps(rtplx_row(0, "XX", "x"))], r"RTP_LX_EN.jsonl:1: field 'Locale': .*unknown language 'XX'"),
    ([json.dumps(rtplx_row(0, "DE", "x"))], r":1: field 'Locale': .*does not match"),
    ([GOOD, GOOD], r":2: field 'Index': duplicate Index 0"),
    ([], r"RTP_LX_EN.jsonl:1: file is empty"),
])
def test_rtplx_bad_input(tmp_path: Path, lines: list[str], pattern: str) -> None:
    root = _rtplx_root(tmp_path, lines)
    with pytest.raises(records.DataFormatError, match=pattern):
        rtplx_mod.load_rtplx(root, ["en"])


def test_rtplx_unknown_language_argument(tmp_path: Path) -> None:
    root = _rtplx_root(tmp_path, [GOOD])
    with pytest.raises(UnknownLanguageError, match="'xx'"):
        rtplx_mod.load_rtplx(root, ["xx"])
    with pytest.raises(records.DataFormatError, match="no RTP-LX file for language 'de'"):
        rtplx_mod.load_rtplx(root, ["de"])


def test_translated_200_bad_input(tmp_path: Path) -> None:
    folder = tmp_path / "xg-translated-rtplx-200"
    folder.mkdir()
    (folder / "dpo_toxicity_pairwise_en_200.jsonl").write_text('{"Prompt": "a"}\n{"Text": "b"}\n')
    with pytest.raises(records.DataFormatError, match=r"_en_200.jsonl:2: field 'Prompt': missing field"):
        rtplx_mod.load_translated_200(tmp_path, ["en"])
    (folder / "dpo_toxicity_pairwise_en_200.jsonl").write_text('{"Prompt": "a"}\n')
    (folder / "dpo_toxicity_pairwise_de_200.jsonl").write_text('{"Prompt": "a"}\n{"Prompt": "b"}\n')
    with pytest.raises(records.DataFormatError, match="not parallel"):
        rtplx_mod.load_translated_200(tmp_path, ["en", "de"])
    (folder / "dpo_toxicity_pairwise_qq_200.jsonl").write_text('{"Prompt": "a"}\n')
    with pytest.raises(records.DataFormatError, match="unknown language 'qq'"):
        rtplx_mod.load_translated_200(tmp_path, ["en"])


def _refuses(load: Any, path: Path, cases: list[tuple[str, str]]) -> None:
    """Write each (content, message pattern) to ``path`` and check ``load()`` names the file/line/field."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for content, pattern in cases:
        path.write_text(content)
        with pytest.raises(records.DataFormatError, match=pattern):
            load()


def test_davidson_bad_input(tmp_path: Path) -> None:
    _refuses(lambda: sources.load_davidson(tmp_path), tmp_path / "davidson-hate-offensive" / "labeled_data.csv", [
        (",count,hate_speech,offensive_language,neither,class,tweet\n0,3,0,0,3,2,ok\n1,3,0,0,3,7,bad\n",
         r"labeled_data.csv:3: field 'class': class must be 0, 1 or 2"),
        (",count,class\n0,3,2\n", r":1: field 'tweet': missing column"),
        ("", "file is empty")])


def test_jigsaw_schema(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text('id,comment_text,toxic,insult\nA1,"a, b",0,1\nA2,c,0.7,0\nA3,d,0,0\nA4,e,-1,-1\n')
    rows = sources.load_jigsaw(path)
    assert [(r.id, r.label) for r in rows] == [("jigsaw:A1", 0), ("jigsaw:A2", 1), ("jigsaw:A3", 0)]
    rows = sources.load_jigsaw(path, label_columns=("toxic", "insult"))
    assert [r.label for r in rows] == [1, 1, 0]
    assert rows[0].text == "a, b"
    path.write_text("id,comment_text,toxic\nA1,x,yes\n")
    with pytest.raises(records.DataFormatError, match=r"train.csv:2: field 'toxic': label must be a number"):
        sources.load_jigsaw(path)
    path.write_text("id,comment_text,toxic\nA1,x,3\n")
    with pytest.raises(records.DataFormatError, match=r":2: field 'toxic': label must be in \[0, 1\]"):
        sources.load_jigsaw(path)
    with pytest.raises(records.DataFormatError, match=r"field 'severe_toxic': missing column"):
        sources.load_jigsaw(path, label_columns=("severe_toxic",))
    with pytest.raises(records.DataFormatError, match="not found"):
        sources.load_jigsaw(tmp_path / "absent.csv")


def test_paradetox_bad_input(tmp_path: Path) -> None:
    _refuses(lambda: sources.load_paradetox(tmp_path), tmp_path / "paradetox-en" / "paradetox.tsv", [
        ("", r"paradetox.tsv:1: file is empty"), ("text\tlabel\nx\t1\n", r":1: field 'toxic'")])


def test_pplm_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    _refuses(lambda: sources.load_pplm_pairs(path), path, [
        (json.dumps({"prompt_text": "a", "unpert_gen_text": "b"}) + "\n", r"p.jsonl:1: field 'pert_gen_text': missing field"),
        ("not json\n", r"p.jsonl:1: bad JSON"), ("\n", "file is empty")])


def test_lexicon_bad_input(tmp_path: Path) -> None:
    folder = tmp_path / "ldnoobw"
    folder.mkdir()
    (folder / "en.txt").write_text("\n\n")
    with pytest.raises(records.DataFormatError, match=r"en.txt:1: lexicon file is empty"):
        sources.load_lexicons(tmp_path)
    (folder / "en.txt").write_text("bad\nBad\nworse\n")
    (folder / "tlh.txt").write_text("ignored\n")  # upstream has lists outside our 17 languages
    assert sources.load_lexicons(tmp_path) == {"en": ["bad", "worse"]}
    with pytest.raises(UnknownLanguageError):
        sources.load_lexicons(tmp_path, ["klingon"])
