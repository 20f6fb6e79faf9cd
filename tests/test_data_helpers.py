"""Helpers (no tests): small synthetic data roots and a ZipCrypto writer for the data tests."""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

from interp.data.languages import LANGUAGES

_CRC_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0xEDB88320 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def _crc_byte(crc: int, b: int) -> int:
    return (crc >> 8) ^ _CRC_TABLE[(crc ^ b) & 0xFF]


def zipcrypto_encrypt(data: bytes, password: bytes, check_byte: int) -> bytes:
    """Return ``data`` encrypted with traditional PKWARE encryption (12-byte header first)."""
    k = [0x12345678, 0x23456789, 0x34567890]

    def update(c: int) -> None:
        k[0] = _crc_byte(k[0], c)
        k[1] = ((k[1] + (k[0] & 0xFF)) * 134775813 + 1) & 0xFFFFFFFF
        k[2] = _crc_byte(k[2], (k[1] >> 24) & 0xFF)

    for c in password:
        update(c)
    out = bytearray()
    for p in bytes(range(11)) + bytes([check_byte]) + data:
        t = (k[2] | 2) & 0xFFFF
        out.append(p ^ (((t * (t ^ 1)) >> 8) & 0xFF))
        update(p)
    return bytes(out)


def write_encrypted_zip(path: Path, files: dict[str, bytes], password: bytes) -> Path:
    """Write a stored (uncompressed) ZipCrypto-encrypted zip of ``files``."""
    local, central = bytearray(), bytearray()
    for name, data in files.items():
        crc = zlib.crc32(data) & 0xFFFFFFFF
        enc = zipcrypto_encrypt(data, password, crc >> 24)
        nb = name.encode()
        offset = len(local)
        local += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 1, 0, 0, 0x21, crc, len(enc), len(data), len(nb), 0)
        local += nb + enc
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 1, 0, 0, 0x21, crc, len(enc), len(data),
                               len(nb), 0, 0, 0, 0, 0, offset) + nb
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(files), len(files), len(central), len(local), 0)
    path.write_bytes(bytes(local + central + end))
    return path


def rtplx_row(index: int | str, locale: str, text: str, tox: float = 2.0) -> dict:
    """Return one RTP-LX-shaped record."""
    return {"Prompt": text, "Completion": "", "Index": index, "Locale": locale, "Dialect": "",
            "Annotations": {"Toxicity": tox, "Insult": 1.0}, "AnnotationsRaw": {"Toxicity": [2, 2, 2]}}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def make_mini_root(root: Path, n: int = 12) -> Path:
    """Write a complete tiny data root (all 17 languages) in the real layout and return it."""
    for lang in LANGUAGES:
        code = "ZH-Hans" if lang == "zh" else lang.upper()
        locale = "ZH" if lang == "zh" else lang.upper()
        rows = [rtplx_row(i if lang == "en" else str(i), locale, f"{lang} sentence number {i} " + "x" * (i % 5),
                          1.0 + (i % 5)) for i in range(n)]
        write_jsonl(root / "rtp-lx-v0.2" / f"RTP_LX_{code}.jsonl", rows)
        write_jsonl(root / "xg-translated-rtplx-200" / f"dpo_toxicity_pairwise_{lang}_200.jsonl",
                    [{"Prompt": f"{lang} sentence number {i} " + "x" * (i % 5) if lang == "en"
                      else f"{lang} line {i} &quot;q&quot;"} for i in range(3)])
        if lang != "id":
            (root / "ldnoobw").mkdir(parents=True, exist_ok=True)
            (root / "ldnoobw" / f"{lang}.txt").write_text("badword\nworse word\n", encoding="utf-8")
    (root / "paradetox-en").mkdir(parents=True, exist_ok=True)
    (root / "paradetox-en" / "paradetox.tsv").write_text(
        "toxic\tneutral1\tneutral2\tneutral3\nyou idiot\tyou\t\t\nshort only\n"
        'rude one\tpolite one\t"spans\nlines"\t\n', encoding="utf-8")
    (root / "davidson-hate-offensive").mkdir(parents=True, exist_ok=True)
    (root / "davidson-hate-offensive" / "labeled_data.csv").write_text(
        ",count,hate_speech,offensive_language,neither,class,tweet\n0,3,3,0,0,0,a\n1,3,0,3,0,1,b\n2,3,0,0,3,2,c\n",
        encoding="utf-8")
    (root / "jigsaw-sample-ibm-max").mkdir(parents=True, exist_ok=True)
    (root / "jigsaw-sample-ibm-max" / "test_examples.csv").write_text(
        "comment_text,toxic,severe_toxic,obscene,threat,insult,identity_hate\nhi,0,0,0,0,0,0\nugh,1,0,1,0,0,0\n",
        encoding="utf-8")
    return root
