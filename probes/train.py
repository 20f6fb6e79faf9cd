"""``train_probe``: fit and evaluate a probe on labelled texts (features extracted once);
``load_probe_data`` and ``load_jigsaw_test`` read the data sets at the edge."""
from __future__ import annotations

import hashlib
import os
from typing import Any, Literal, Sequence

import numpy as np
import torch

from probes.features import Pooling, extract_features, feature_name
from probes.metrics import probe_metrics
from probes.probe import Solver, ToxicityProbe

Dataset = Literal["paradetox", "davidson", "jigsaw"]
DATASETS: tuple[str, ...] = ("paradetox", "davidson", "jigsaw")


def load_probe_data(dataset: Dataset, *, data_root: str | os.PathLike[str] | None = None,
                    jigsaw_path: str | os.PathLike[str] | None = None) -> list[Any]:
    """Return the labelled English texts (``interp.data.records.LabeledText``) of ``dataset``."""
    from interp.data import sources

    if dataset == "paradetox":
        return sources.paradetox_labeled(data_root)
    if dataset == "davidson":
        return sources.load_davidson(data_root)
    if dataset == "jigsaw":
        if jigsaw_path is None:
            raise ValueError("dataset 'jigsaw' needs jigsaw_path (--jigsaw-path): the Kaggle train.csv with "
                             "comment_text and toxic columns; it is not in the offline data root")
        return sources.load_jigsaw(jigsaw_path)
    raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")


def load_jigsaw_test(path: str | os.PathLike[str]) -> list[Any]:
    """Return the labelled Jigsaw test texts of ``path``.

    ``path`` is a CSV with ``comment_text`` and ``toxic`` columns, or Kaggle's ``test.csv``
    (``id``, ``comment_text``), whose labels are then read from ``test_labels.csv`` next to it and
    joined on ``id``. Rows labelled -1 (not scored by Kaggle) are dropped, as in :func:`interp.data.sources.load_jigsaw`.
    """
    import csv
    import tempfile
    from pathlib import Path

    from interp.data import sources

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Jigsaw test CSV not found (Kaggle test.csv + test_labels.csv, or one "
                                "CSV with comment_text and toxic columns)")
    with path.open(encoding="utf-8", newline="") as f:
        header = next(csv.reader(f), [])
    if "toxic" in header:
        return sources.load_jigsaw(path)
    labels = path.with_name("test_labels.csv")
    if not labels.is_file():
        raise FileNotFoundError(f"{path} has no 'toxic' column and {labels} does not exist; put Kaggle's "
                                "test_labels.csv next to test.csv, or pass a CSV with comment_text and toxic")
    with labels.open(encoding="utf-8", newline="") as f:
        by_id = {row["id"]: row["toxic"] for row in csv.DictReader(f) if "id" in row and "toxic" in row}
    with path.open(encoding="utf-8", newline="") as f, tempfile.TemporaryDirectory() as tmp:
        merged = Path(tmp) / "test_merged.csv"
        with merged.open("w", encoding="utf-8", newline="") as out:
            w = csv.DictWriter(out, fieldnames=["id", "comment_text", "toxic"])
            w.writeheader()
            for n, row in enumerate(csv.DictReader(f), 2):
                if row.get("id") not in by_id:
                    raise ValueError(f"{path}:{n}: id {row.get('id')!r} has no label in {labels}")
                w.writerow({"id": row["id"], "comment_text": row["comment_text"], "toxic": by_id[row["id"]]})
        return sources.load_jigsaw(merged)


def group_of(record: Any) -> str:
    """Return the group a record belongs to: paraphrases of one ParaDetox row share a group.

    Splitting by group keeps a toxic sentence and its neutral paraphrases on the same side, so
    the test set never holds a paraphrase of a training sentence.
    """
    rid = str(record.id)
    if record.source == "paradetox" and ":" in rid:
        return rid.rsplit(":", 1)[0]
    return rid


def _unit(key: str, seed: int) -> float:
    """Return a deterministic number in [0, 1) from ``key`` and ``seed`` (order-independent split)."""
    h = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def split_records(records: Sequence[Any], *, test_fraction: float = 0.2, seed: int = 99,
                  max_examples: int | None = None) -> tuple[list[Any], list[Any]]:
    """Return (train, test) records, split by group hash; ``max_examples`` keeps whole groups.

    The split depends only on ids and seed, never on file order.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    groups: dict[str, list[Any]] = {}
    for r in records:
        groups.setdefault(group_of(r), []).append(r)
    keys = sorted(groups, key=lambda g: _unit(g, seed))
    if max_examples is not None:
        if max_examples < 1:
            raise ValueError(f"max_examples must be >= 1, got {max_examples}")
        kept, n = [], 0
        for g in keys:
            if n >= max_examples:
                break
            kept.append(g)
            n += len(groups[g])
        keys = kept
    train, test = [], []
    for g in sorted(keys):
        (test if _unit("test:" + g, seed) < test_fraction else train).extend(groups[g])
    return train, test


def _random_init_copy(model: Any, seed: int) -> Any:
    """Return a freshly initialised HF model with ``model``'s config, dtype and device (seeded)."""
    from transformers import AutoModelForCausalLM

    from interp.model.architecture import hf_model_of
    from interp.model.loading import ModelView

    hf = hf_model_of(model.model if isinstance(model, ModelView) else model)
    p = next(hf.parameters())
    torch.manual_seed(seed)
    fresh = AutoModelForCausalLM.from_config(hf.config, attn_implementation="eager", dtype=p.dtype)
    return fresh.to(p.device).eval()


def _fit_and_score(model: Any, train: list[Any], test: list[Any], *, solver: Solver, layer: int | None,
                   pooling: Pooling, seed: int, tokenizer: Any, cache_dir: Any, progress: bool,
                   batch_size: int) -> tuple[ToxicityProbe, dict[str, Any]]:
    texts = [r.text for r in train] + [r.text for r in test]
    X = extract_features(model, texts, layer=layer, pooling=pooling, batch_size=batch_size,
                         cache_dir=cache_dir, progress=progress, tokenizer=tokenizer)
    y = np.array([r.label for r in train] + [r.label for r in test], dtype=np.int64)
    n_tr = len(train)
    probe = ToxicityProbe(solver=solver, seed=seed).fit(X[:n_tr], y[:n_tr])
    out: dict[str, Any] = {"train": probe_metrics(probe, X[:n_tr], y[:n_tr]),
                           "test": probe_metrics(probe, X[n_tr:], y[n_tr:])}
    if solver == "paper":
        out["val"] = probe_metrics(probe, X[:n_tr][probe.val_idx_], y[:n_tr][probe.val_idx_])
        out["best_epoch"] = probe.best_epoch_
    return probe, out


def _split_description(val: int, n_train: int, n_test: int, test_file: bool) -> dict[str, Any]:
    """Return what each split is, as the paper would name it (its 90/10 is train/validation)."""
    n = n_train + n_test
    return {"train": n_train - val, "validation": val, "test": n_test,
            "validation_role": ("the paper's 90/10 train/validation split of the training texts (best epoch)"
                                if val else "none (logreg solver)"),
            "test_role": ("the Jigsaw test split (as the paper's ROC-AUC)" if test_file else
                          f"extra held-out split ({n_test}/{n} texts), not in the paper: give a Jigsaw test "
                          "CSV (probe.jigsaw_test_path) for the paper's test set")}


def train_probe(model: Any, records: Sequence[Any], *, test: Sequence[Any] | None = None, solver: Solver = "paper",
                layer: int | None = None, pooling: Pooling = "mean", max_examples: int | None = None,
                seed: int = 99, random_init_baseline: bool = False, test_fraction: float = 0.2,
                batch_size: int = 32, cache_dir: str | os.PathLike[str] | None = None,
                progress: bool = True) -> tuple[ToxicityProbe, dict[str, Any]]:
    """Return (fitted probe, metrics) for an English toxicity probe on ``model``'s features.

    ``records`` are the labelled texts (``interp.data.records.LabeledText``; load them at the edge with
    :func:`load_probe_data`). Metrics hold ``train``, ``val`` (the paper solver's validation
    split: the paper's 90/10 train/validation split of the training texts) and ``test`` (without
    ``test``: an *extra* held-out ``test_fraction`` of the data, split by paraphrase group, which
    the paper does not have) each as accuracy/roc_auc/f1/n; ``split`` says what each split is.
    With ``test`` (e.g. the Jigsaw test CSV's texts, :func:`load_jigsaw_test`) the whole data set
    trains and ``test`` scores, as the paper's ROC-AUC on the Jigsaw test split;
    with ``random_init_baseline`` also ``random_init`` = the same recipe on a freshly
    initialised model of the same config (seeded), showing how much is architecture alone.
    """
    from interp.core.artifacts import stable_hash
    from interp.model.loading import model_fingerprint, model_id

    records = list(records)
    if not records:
        raise ValueError("no labelled texts to train the probe on (the data set is empty)")
    dataset = _sources(records)
    given_test = test is not None
    if test is not None:
        test = list(test)
        train = records
        if max_examples is not None:  # whole groups, in the seeded order split_records uses
            train, held = split_records(records, test_fraction=0.5, seed=seed, max_examples=max_examples)
            train = train + held
    else:
        train, test = split_records(records, test_fraction=test_fraction, seed=seed, max_examples=max_examples)
    if not train or not test:
        raise ValueError(f"split of {len(records)} texts left train={len(train)} test={len(test)}; "
                         "raise max_examples or use a larger data set")
    tokenizer = getattr(model, "tokenizer", None)
    probe, metrics = _fit_and_score(model, train, test, solver=solver, layer=layer, pooling=pooling, seed=seed,
                                    tokenizer=tokenizer, cache_dir=cache_dir, progress=progress,
                                    batch_size=batch_size)
    data_info = {"dataset": dataset, "n_texts": len(train) + len(test), "n_train": len(train),
                 "n_test": len(test), "n_toxic": int(sum(r.label for r in train + test)),
                 "test_fraction": None if given_test else test_fraction,
                 "test_source": _sources(test) if given_test else "split", "max_examples": max_examples,
                 "split": _split_description(int(metrics.get("val", {}).get("n", 0)), len(train), len(test),
                                            given_test),
                 "split_seed": seed,
                 "ids_hash": stable_hash(sorted(r.id for r in train + test))}
    metrics = {"dataset": dataset, "feature": feature_name(layer, pooling), "solver": solver, **data_info,
               **metrics}
    if random_init_baseline:
        fresh = _random_init_copy(model, seed)
        _, base = _fit_and_score(fresh, train, test, solver=solver, layer=layer, pooling=pooling, seed=seed,
                                 tokenizer=tokenizer, cache_dir=cache_dir, progress=progress,
                                 batch_size=batch_size)
        metrics["random_init"] = base
        del fresh
    probe.meta_ = {"model_id": model_id(model), "fingerprint": model_fingerprint(model), "layer": layer,
                   "pooling": pooling, "feature": feature_name(layer, pooling), "data": data_info,
                   "metrics": {k: metrics[k] for k in ("train", "val", "test", "random_init") if k in metrics}}
    return probe, metrics


def _sources(records: Sequence[Any]) -> str:
    """Return the data set name(s) of labelled texts (``davidson:class1`` counts as ``davidson``)."""
    return "+".join(sorted({str(r.source).split(":")[0] for r in records}))


__all__ = ["train_probe", "load_probe_data", "load_jigsaw_test", "split_records", "group_of", "DATASETS"]
