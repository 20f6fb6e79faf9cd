"""``ToxicityProbe``: a linear toxic-vs-clean probe on pooled residual features (sklearn style).

Two solvers:

- ``paper`` (Li et al. 2024 Table 7 / Lee et al. 2024): one torch linear unit without bias,
  sigmoid + BCE, Adam lr 1e-4, batch 10, 20 epochs, a seeded 90/10 train/validation split, and
  the weights of the epoch with the lowest validation loss. ``history_`` keeps every epoch.
- ``logreg``: scikit-learn ``LogisticRegression(class_weight="balanced")`` (with intercept).

``direction`` is the unit-norm weight vector in d_model, the quantity stage 2 compares with
value vectors.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor, nn

Solver = Literal["paper", "logreg"]
SOLVERS: tuple[str, ...] = ("paper", "logreg")
PROBE_FILE = "probe.safetensors"
META_FILE = "probe.json"


class ProbeMismatchError(ValueError):
    """A saved probe does not fit the model it is being loaded for."""


def as_features(X: Any, *, name: str = "X", d_model: int | None = None) -> np.ndarray:
    """Return ``X`` as a finite float64 [n, d] array, or raise an error naming what was expected."""
    if isinstance(X, Tensor):
        X = X.detach().float().cpu().numpy()
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D [n_examples, d_model], got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty (0 examples): need features for at least one text")
    if d_model is not None and X.shape[1] != d_model:
        raise ValueError(f"{name} has {X.shape[1]} features per row but the probe expects d_model={d_model}; "
                         "extract features with the model (and layer) the probe was trained on")
    bad = ~np.isfinite(X)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise ValueError(f"{name} has NaN/inf values in {len(rows)} row(s), first row {int(rows[0])}; "
                         "features must be finite (check the model dtype, or drop those texts)")
    return X


def as_labels(y: Any, n: int, *, need_both: bool = True) -> np.ndarray:
    """Return ``y`` as an int64 [n] array of 0/1 labels, or raise an error naming what was expected."""
    if isinstance(y, Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"y must be 1-D with one label per row of X (n={n}), got shape {y.shape}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError("y contains NaN/inf; labels must be 0 (clean) or 1 (toxic)")
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"labels must be 0 (clean) or 1 (toxic), got values {sorted(values)[:10]}")
    if need_both and len(values) < 2:
        only = "toxic (1)" if values == {1} else "clean (0)"
        raise ValueError(f"y has a single class: all {n} labels are {only}; a probe needs both toxic and "
                         "clean examples")
    return y.astype(np.int64)


def _probe_paths(path: Path) -> tuple[Path, Path, Path]:
    """Return (weights, metadata JSON, manifest) paths for a probe directory or weights file."""
    if path.suffix == ".safetensors":
        return path, path.with_suffix(".json"), path.with_name(path.stem + ".manifest.json")
    return path / PROBE_FILE, path / META_FILE, path / "manifest.json"


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class ToxicityProbe:
    """A linear toxicity probe on [n, d_model] features with sklearn's estimator interface."""

    def __init__(self, solver: Solver = "paper", lr: float = 1e-4, batch_size: int = 10, epochs: int = 20,
                 val_fraction: float = 0.1, seed: int = 99) -> None:
        self.solver = solver
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.val_fraction = val_fraction
        self.seed = seed
        # Provenance filled by train_probe / load: model fingerprint, layer, pooling, data, metrics.
        self.meta: dict[str, Any] = {}

    # ------------------------------------------------------------------ fitting
    def get_params(self) -> dict[str, Any]:
        """Return the hyperparameters (sklearn convention)."""
        return {"solver": self.solver, "lr": self.lr, "batch_size": self.batch_size, "epochs": self.epochs,
                "val_fraction": self.val_fraction, "seed": self.seed}

    def set_params(self, **params: Any) -> "ToxicityProbe":
        """Set hyperparameters by name and return self (sklearn convention)."""
        for k, v in params.items():
            if k not in self.get_params():
                raise ValueError(f"unknown ToxicityProbe parameter {k!r}; valid: {sorted(self.get_params())}")
            setattr(self, k, v)
        return self

    def _check_params(self) -> None:
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.batch_size < 1 or self.epochs < 1 or self.lr <= 0:
            raise ValueError(f"batch_size, epochs and lr must be positive, got {self.batch_size}, "
                             f"{self.epochs}, {self.lr}")

    def split_indices(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (train, validation) row indices of the paper solver's seeded split."""
        n_val = int(round(n * self.val_fraction))
        n_val = min(max(n_val, 1), n - 1)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).numpy()
        return perm[n_val:], perm[:n_val]

    def fit(self, X: Any, y: Any) -> "ToxicityProbe":
        """Fit the probe on features ``X`` [n, d_model] and labels ``y`` (1 toxic, 0 clean); return self."""
        self._check_params()
        X = as_features(X)
        y = as_labels(y, X.shape[0])
        if X.shape[0] < 4:
            raise ValueError(f"need at least 4 examples to fit (train + validation split), got {X.shape[0]}")
        self.n_features_in_ = X.shape[1]
        if self.solver == "logreg":
            self._fit_logreg(X, y)
        else:
            self._fit_paper(X, y)
        return self

    def _fit_logreg(self, X: np.ndarray, y: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(class_weight="balanced", max_iter=2000, random_state=self.seed)
        clf.fit(X, y)
        self.coef_ = clf.coef_.astype(np.float64).reshape(1, -1)
        self.intercept_ = clf.intercept_.astype(np.float64).reshape(1)
        self.history_ = []
        self.best_epoch_ = None

    def _fit_paper(self, X: np.ndarray, y: np.ndarray) -> None:
        train_idx, val_idx = self.split_indices(X.shape[0])
        self.train_idx_, self.val_idx_ = train_idx, val_idx
        Xt = torch.as_tensor(X, dtype=torch.float32)
        yt = torch.as_tensor(y, dtype=torch.float32)
        gen = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)  # nn.Linear's init draws from the global generator
        linear = nn.Linear(X.shape[1], 1, bias=False)
        opt = torch.optim.Adam(linear.parameters(), lr=self.lr)
        loss_fn = nn.BCEWithLogitsLoss()
        x_tr, y_tr = Xt[train_idx], yt[train_idx]
        x_va, y_va = Xt[val_idx], yt[val_idx]
        history: list[dict[str, float]] = []
        best_loss, best_state, best_epoch = float("inf"), None, 0
        # Batches of 10 x d_model are far too small for intra-op threads: syncing them costs
        # ~30x the arithmetic on a busy machine, so train single-threaded.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            for epoch in range(1, self.epochs + 1):
                loss_val, state = self._paper_epoch(linear, opt, loss_fn, x_tr, y_tr, x_va, y_va, gen)
                history.append({"epoch": epoch, **loss_val})
                if loss_val["val_loss"] < best_loss:
                    best_loss, best_epoch, best_state = loss_val["val_loss"], epoch, state
        finally:
            torch.set_num_threads(threads)
        assert best_state is not None
        self.coef_ = best_state.double().numpy().reshape(1, -1)
        self.intercept_ = np.zeros(1)
        self.history_ = history
        self.best_epoch_ = best_epoch

    def _paper_epoch(self, linear: nn.Linear, opt: torch.optim.Optimizer, loss_fn: nn.Module, x_tr: Tensor,
                     y_tr: Tensor, x_va: Tensor, y_va: Tensor, gen: torch.Generator) -> tuple[dict[str, float], Tensor]:
        """Return (losses, weight copy) after one epoch of minibatch Adam over a fresh shuffle."""
        order = torch.randperm(len(x_tr), generator=gen)
        total = 0.0
        for start in range(0, len(order), self.batch_size):
            b = order[start:start + self.batch_size]
            opt.zero_grad()
            loss = loss_fn(linear(x_tr[b]).squeeze(-1), y_tr[b])
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        with torch.no_grad():
            logits = linear(x_va).squeeze(-1)
            val_loss = float(loss_fn(logits, y_va))
            val_acc = float(((logits > 0).float() == y_va).float().mean())
        return ({"train_loss": total / len(order), "val_loss": val_loss, "val_accuracy": val_acc},
                linear.weight.detach().clone())

    # ------------------------------------------------------------------ predicting
    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise RuntimeError("this ToxicityProbe is not fitted yet; call fit(X, y) or ToxicityProbe.load(path)")

    def decision_function(self, X: Any) -> np.ndarray:
        """Return the logit ``X @ w + b`` per row, shape [n]."""
        self._check_fitted()
        X = as_features(X, d_model=self.coef_.shape[1])
        return X @ self.coef_[0] + float(self.intercept_[0])

    def predict_proba(self, X: Any) -> np.ndarray:
        """Return [n, 2] probabilities of (clean, toxic)."""
        p = _sigmoid(self.decision_function(X))
        return np.stack([1.0 - p, p], axis=1)

    def predict(self, X: Any) -> np.ndarray:
        """Return predicted labels (1 toxic, 0 clean), shape [n]."""
        return (self.decision_function(X) > 0).astype(np.int64)

    def score(self, X: Any, y: Any) -> float:
        """Return the accuracy on (X, y)."""
        pred = self.predict(X)
        return float((pred == as_labels(y, len(pred), need_both=False)).mean())

    @property
    def classes_(self) -> np.ndarray:
        return np.array([0, 1])

    @property
    def d_model(self) -> int:
        """Return the feature dimension the probe expects."""
        self._check_fitted()
        return int(self.coef_.shape[1])

    @property
    def direction(self) -> Float[Tensor, "d_model"]:
        """Return the unit-norm toxic direction (the weight vector) as a float32 tensor."""
        self._check_fitted()
        w = torch.as_tensor(self.coef_[0], dtype=torch.float64)
        return (w / w.norm()).float()

    # ------------------------------------------------------------------ persistence
    def metadata(self) -> dict[str, Any]:
        """Return the JSON metadata saved next to the weights."""
        self._check_fitted()
        return {"format": "xdetox-probe/1", "solver": self.solver, "params": self.get_params(),
                "d_model": self.d_model, "best_epoch": self.best_epoch_, "history": self.history_,
                **self.meta}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the probe and return the weights file.

        ``path`` is a directory (``probe.safetensors`` + ``probe.json`` + ``manifest.json`` inside)
        or a ``*.safetensors`` file (then ``<stem>.json`` and ``<stem>.manifest.json`` beside it).
        """
        from interp.artifacts import make_manifest, save_tensors, write_json

        self._check_fitted()
        weights, meta_json, manifest = _probe_paths(Path(path))
        meta = self.metadata()
        save_tensors(weights, {"weight": torch.as_tensor(self.coef_, dtype=torch.float32),
                               "bias": torch.as_tensor(self.intercept_, dtype=torch.float32)},
                     metadata={"d_model": self.d_model, "solver": self.solver})
        write_json(meta_json, meta)
        write_json(manifest, make_manifest(
            kind="toxicity-probe", config=self.get_params(), seed=self.seed, model_id=meta.get("model_id"),
            inputs={"data": meta.get("data")},
            extra={"fingerprint": meta.get("fingerprint"), "files": [weights.name, meta_json.name]}))
        return weights

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: Any = None, *, strict: bool = True) -> "ToxicityProbe":
        """Return the probe saved in ``path``; with ``model``, check d_model and the fingerprint.

        A d_model mismatch always fails. A fingerprint mismatch (different weights or config)
        fails unless ``strict=False``, which only warns.
        """
        from interp.artifacts import load_tensors, read_json

        weights, meta_json, _ = _probe_paths(Path(path))
        root = weights
        for f in (weights, meta_json):
            if not f.is_file():
                raise FileNotFoundError(f"{f}: missing; expected a probe directory written by "
                                        "`xdetox probe train` or ToxicityProbe.save")
        tensors, _ = load_tensors(weights)
        meta = read_json(meta_json)
        if not isinstance(meta, dict):
            raise ValueError(f"{meta_json}: not probe metadata (expected a JSON object); rewrite the probe with "
                             "`xdetox probe train`")
        if "weight" not in tensors:
            raise ValueError(f"{weights}: no 'weight' tensor; not a probe file")
        params = meta.get("params", {})
        probe = cls(**{k: v for k, v in params.items() if k in cls().get_params()})
        probe.solver = meta.get("solver", probe.solver)
        probe.coef_ = tensors["weight"].double().numpy().reshape(1, -1)
        probe.intercept_ = tensors.get("bias", torch.zeros(1)).double().numpy().reshape(1)
        probe.n_features_in_ = probe.coef_.shape[1]
        probe.history_ = meta.get("history", [])
        probe.best_epoch_ = meta.get("best_epoch")
        reserved = {"format", "solver", "params", "d_model", "best_epoch", "history"}
        probe.meta = {k: v for k, v in meta.items() if k not in reserved}
        if int(meta.get("d_model", probe.d_model)) != probe.d_model:
            raise ValueError(f"{meta_json}: field d_model={meta['d_model']} disagrees with the weight "
                             f"shape {tuple(probe.coef_.shape)} in {weights}")
        if model is not None:
            probe.check_model(model, strict=strict, where=str(root))
        return probe

    def check_model(self, model: Any, *, strict: bool = True, where: str = "probe") -> None:
        """Raise :class:`ProbeMismatchError` when ``model`` is not the model this probe was trained on."""
        from interp.architecture import get_adapter
        from interp.loading import ModelView, model_fingerprint, model_id

        d = get_adapter(model.model if isinstance(model, ModelView) else model).d_model
        if d != self.d_model:
            raise ProbeMismatchError(
                f"{where}: probe has d_model={self.d_model} but model {model_id(model)} has d_model={d}; "
                f"load it with the model it was trained on ({self.meta.get('model_id', 'unknown')})")
        want = self.meta.get("fingerprint")
        if not want:
            return  # imported probes carry no fingerprint
        got = model_fingerprint(model)
        if got != want:
            msg = (f"{where}: probe was trained on model fingerprint {want} "
                   f"({self.meta.get('model_id', 'unknown')}) but {model_id(model)} has fingerprint {got}; "
                   "its weights or config differ. Retrain the probe, or pass strict=False (--no-strict) "
                   "to use it anyway")
            if strict:
                raise ProbeMismatchError(msg)
            warnings.warn(msg, stacklevel=3)

    def __repr__(self) -> str:
        state = f", d_model={self.d_model}" if hasattr(self, "coef_") else ""
        return f"ToxicityProbe(solver={self.solver!r}, lr={self.lr}, epochs={self.epochs}, seed={self.seed}{state})"


__all__ = ["ToxicityProbe", "ProbeMismatchError", "as_features", "as_labels", "SOLVERS"]
