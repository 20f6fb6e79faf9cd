"""``ToxicityProbe``: a linear toxic-vs-clean probe on pooled residual features, a scikit-learn estimator.

Two solvers:

- ``paper`` (Li et al. 2024 Table 7 / Lee et al. 2024): one torch linear unit without bias,
  sigmoid + BCE, Adam lr 1e-4, batch 10, 20 epochs, a seeded 90/10 train/validation split, and
  the weights of the epoch with the lowest validation loss. ``history_`` keeps every epoch.
- ``logreg``: scikit-learn ``LogisticRegression(class_weight="balanced")`` (with intercept).

``direction_`` is the unit-norm weight vector in d_model, pointing toward ``classes_[1]`` (the
toxic class: 1 for 0/1 labels); stage 2 compares it with value vectors.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
from jaxtyping import Float
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import Tensor, nn

Solver = Literal["paper", "logreg"]
SOLVERS: tuple[str, ...] = ("paper", "logreg")
PROBE_FILE = "probe.safetensors"
META_FILE = "probe.json"
FORMAT = "xdetox-probe/2"
# Formats load() reads. /1 predates classes_: its probes were all trained on 0 (clean) / 1 (toxic).
READABLE_FORMATS: tuple[str, ...] = ("xdetox-probe/1", FORMAT)


class ProbeMismatchError(ValueError):
    """A saved probe does not fit the model it is being loaded for."""


def _host(a: Any) -> Any:
    """Return a torch tensor as a NumPy array (half precision as float32); anything else unchanged."""
    if isinstance(a, Tensor):
        a = a.detach().cpu()
        return (a.float() if a.is_floating_point() else a).numpy()
    return a


def _check_finite(X: np.ndarray) -> None:
    """Raise an error naming how many rows of ``X`` hold NaN/inf, and the first one."""
    bad = ~np.isfinite(X)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise ValueError(f"X has NaN/inf values in {len(rows)} row(s), first row {int(rows[0])}; "
                         "features must be finite (check the model dtype, or drop those texts)")


def _probe_paths(path: Path) -> tuple[Path, Path, Path]:
    """Return (weights, metadata JSON, manifest) paths for a probe directory or weights file."""
    if path.suffix == ".safetensors":
        return path, path.with_suffix(".json"), path.with_name(path.stem + ".manifest.json")
    return path / PROBE_FILE, path / META_FILE, path / "manifest.json"


class ToxicityProbe(ClassifierMixin, BaseEstimator):
    """A binary linear toxicity probe on [n, d_model] features (a scikit-learn classifier).

    Learned state (after ``fit``, ``load`` or ``from_weights``): ``coef_`` [1, d], ``intercept_``
    [1], ``classes_`` (from the labels; ``classes_[1]`` is the toxic class), ``n_features_in_``,
    ``direction_`` (unit ``coef_``), ``history_`` and ``best_epoch_`` (paper solver), and
    ``meta_``: provenance (model fingerprint, layer, pooling, data, metrics) that ``fit`` resets
    and ``train_probe`` / ``load`` fill.
    """

    def __init__(self, *, solver: Solver = "paper", lr: float = 1e-4, batch_size: int = 10, epochs: int = 20,
                 val_fraction: float = 0.1, seed: int = 99) -> None:
        self.solver = solver
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.val_fraction = val_fraction
        self.seed = seed

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False  # one direction: toxic vs clean
        return tags

    # ------------------------------------------------------------------ fitting
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
        """Fit on features ``X`` [n, d_model] and two-class labels ``y`` (``classes_[1]`` = toxic); return self."""
        self._check_params()
        X, y = validate_data(self, _host(X), _host(y), dtype=np.float64, ensure_all_finite=False)
        _check_finite(X)
        check_classification_targets(y)
        classes, y01 = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"y has one class only: all {len(y)} labels are {classes.tolist()[0]!r}; a probe needs "
                             "both toxic and clean examples")
        y_type = type_of_target(y, input_name="y")
        if y_type != "binary":
            raise ValueError(f"Only binary classification is supported (toxic vs clean); y has {len(classes)} "
                             f"classes {classes[:10].tolist()} (type of target: {y_type})")
        if X.shape[0] < 4:
            raise ValueError(f"need at least 4 examples to fit (train + validation split), got "
                             f"n_samples={X.shape[0]}")
        if self.solver == "logreg":
            coef, intercept = self._fit_logreg(X, y01)
        else:
            coef, intercept = self._fit_paper(X, y01)
        self._set_weights(coef, intercept, classes)
        self.meta_: dict[str, Any] = {}
        return self

    def _set_weights(self, coef: np.ndarray, intercept: np.ndarray, classes: Sequence[Any]) -> None:
        """Set the fitted state from a [1, d] weight, a [1] bias and the two class labels."""
        coef = np.asarray(coef, dtype=np.float64).reshape(1, -1)
        norm = float(np.linalg.norm(coef))
        if not np.isfinite(norm) or norm == 0.0:
            raise ValueError("probe weight is zero or not finite: it has no toxic direction")
        self.coef_ = coef
        self.intercept_ = np.asarray(intercept, dtype=np.float64).reshape(1)
        self.classes_ = np.asarray(classes)
        self.n_features_in_ = coef.shape[1]
        self.direction_: Float[np.ndarray, "d_model"] = coef[0] / norm

    def _fit_logreg(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(class_weight="balanced", max_iter=2000, random_state=self.seed)
        clf.fit(X, y)
        self.train_idx_, self.val_idx_ = np.arange(len(X)), np.arange(0)  # all rows train; no validation split
        self.history_: list[dict[str, float]] = []
        self.best_epoch_: int | None = None
        return clf.coef_, clf.intercept_

    def _fit_paper(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        train_idx, val_idx = self.split_indices(X.shape[0])
        self.train_idx_, self.val_idx_ = train_idx, val_idx
        Xt = torch.from_numpy(X.astype(np.float32))  # a copy: X may be a read-only memmap
        yt = torch.from_numpy(y.astype(np.float32))
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
        self.history_ = history
        self.best_epoch_ = best_epoch
        return best_state.double().numpy().reshape(1, -1), np.zeros(1)

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
        check_is_fitted(self, msg="this ToxicityProbe is not fitted yet; call fit(X, y) or ToxicityProbe.load(path)")

    def decision_function(self, X: Any) -> Float[np.ndarray, "n"]:
        """Return the logit ``X @ w + b`` per row, shape [n] (positive = toxic, ``classes_[1]``)."""
        self._check_fitted()
        X = _host(X)
        shape = getattr(X, "shape", ())
        if len(shape) == 2 and shape[1] != self.n_features_in_:
            raise ValueError(f"X has {shape[1]} features, but ToxicityProbe is expecting {self.n_features_in_} "
                             f"features as input (the probe's d_model); extract features with the model (and "
                             "layer) the probe was trained on")
        X = validate_data(self, X, reset=False, dtype=np.float64, ensure_all_finite=False)
        _check_finite(X)
        return X @ self.coef_[0] + float(self.intercept_[0])

    def predict_proba(self, X: Any) -> Float[np.ndarray, "n 2"]:
        """Return [n, 2] probabilities of (``classes_[0]``, ``classes_[1]``) = (clean, toxic)."""
        p = expit(self.decision_function(X))
        return np.stack([1.0 - p, p], axis=1)

    def predict(self, X: Any) -> np.ndarray:
        """Return the predicted label per row (``classes_[1]`` where the logit is positive), shape [n]."""
        toxic = self.decision_function(X) > 0
        return self.classes_[toxic.astype(np.int64)]

    @property
    def d_model(self) -> int:
        """Return the feature dimension the probe expects (``n_features_in_``)."""
        self._check_fitted()
        return int(self.n_features_in_)

    @classmethod
    def from_weights(cls, weight: Any, bias: Any = None, *, classes: Sequence[Any] = (0, 1),
                     meta: dict[str, Any] | None = None, **params: Any) -> "ToxicityProbe":
        """Return a fitted probe with the given [1, d] (or [d]) weight, optional bias and classes.

        For probes trained elsewhere (the paper's ``english-probe.pt``) and for :meth:`load`.
        """
        probe = cls(**params)
        weight = np.asarray(_host(weight), dtype=np.float64)
        if weight.ndim == 2 and weight.shape[0] != 1 or weight.ndim not in (1, 2):
            raise ValueError(f"weight has shape {weight.shape}; a toxicity probe is [1, d_model]")
        if len(classes) != 2:
            raise ValueError(f"classes must be two labels (clean, toxic), got {list(classes)}")
        probe._set_weights(weight, np.zeros(1) if bias is None else _host(bias), classes)
        probe.history_, probe.best_epoch_ = [], None
        probe.meta_ = dict(meta or {})
        return probe

    # ------------------------------------------------------------------ persistence
    def metadata(self) -> dict[str, Any]:
        """Return the JSON metadata saved next to the weights."""
        self._check_fitted()
        return {"format": FORMAT, "solver": self.solver, "params": self.get_params(),
                "classes": self.classes_.tolist(), "d_model": self.d_model, "best_epoch": self.best_epoch_,
                "history": self.history_, **self.meta_}

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the probe and return the weights file.

        ``path`` is a directory (``probe.safetensors`` + ``probe.json`` + ``manifest.json`` inside)
        or a ``*.safetensors`` file (then ``<stem>.json`` and ``<stem>.manifest.json`` beside it).
        """
        from interp.core.artifacts import make_manifest, save_tensors, write_json

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
        fails unless ``strict=False``, which only warns. Reads ``xdetox-probe/1`` (0/1 labels,
        before ``classes_`` was saved) and ``/2``.
        """
        from interp.core.artifacts import load_tensors, read_json

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
        fmt = meta.get("format")
        if fmt not in READABLE_FORMATS:
            raise ValueError(f"{meta_json}: format {fmt!r} is not one this version reads {READABLE_FORMATS}; "
                             "retrain the probe with `xdetox probe train` (or load it with the xdetox that wrote it)")
        if "weight" not in tensors:
            raise ValueError(f"{weights}: no 'weight' tensor; not a probe file")
        params = dict(meta.get("params", {}))
        extra: dict[str, Any] = {}
        if params.get("solver") == "imported":  # /1 importer: the paper's recipe, marked in meta_ now
            params["solver"], extra["imported"] = "paper", True
        known = cls().get_params()
        bias = tensors.get("bias")
        try:
            probe = cls.from_weights(tensors["weight"], None if bias is None else bias,
                                     classes=meta.get("classes", [0, 1]),
                                     **{k: v for k, v in params.items() if k in known})
        except ValueError as e:
            raise ValueError(f"{weights}: {e}; rewrite the probe with `xdetox probe train`") from e
        probe.history_ = meta.get("history", [])
        probe.best_epoch_ = meta.get("best_epoch")
        reserved = {"format", "solver", "params", "classes", "d_model", "best_epoch", "history"}
        probe.meta_ = {**{k: v for k, v in meta.items() if k not in reserved}, **extra}
        if int(meta.get("d_model", probe.d_model)) != probe.d_model:
            raise ValueError(f"{meta_json}: field d_model={meta['d_model']} disagrees with the weight "
                             f"shape {tuple(probe.coef_.shape)} in {weights}")
        if model is not None:
            probe.check_model(model, strict=strict, where=str(root))
        return probe

    def check_model(self, model: Any, *, strict: bool = True, where: str = "probe") -> None:
        """Raise :class:`ProbeMismatchError` when ``model`` is not the model this probe was trained on."""
        from interp.model.architecture import get_adapter
        from interp.model.loading import ModelView, model_fingerprint, model_id

        d = get_adapter(model.model if isinstance(model, ModelView) else model).d_model
        if d != self.d_model:
            raise ProbeMismatchError(
                f"{where}: probe has d_model={self.d_model} but model {model_id(model)} has d_model={d}; "
                f"load it with the model it was trained on ({self.meta_.get('model_id', 'unknown')})")
        want = self.meta_.get("fingerprint")
        if not want:
            return  # imported probes carry no fingerprint
        got = model_fingerprint(model)
        if got != want:
            msg = (f"{where}: probe was trained on model fingerprint {want} "
                   f"({self.meta_.get('model_id', 'unknown')}) but {model_id(model)} has fingerprint {got}; "
                   "its weights or config differ. Retrain the probe, or pass strict=False (--no-strict) "
                   "to use it anyway")
            if strict:
                raise ProbeMismatchError(msg)
            warnings.warn(msg, stacklevel=3)


__all__ = ["ToxicityProbe", "ProbeMismatchError", "SOLVERS"]
