"""ToxicityProbe: planted-direction recovery, the paper solver's specification, errors, metrics, I/O."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

from probes import ProbeMismatchError, ToxicityProbe, import_reference_probe, probe_metrics


def _planted(n: int = 600, d: int = 32, strength: float = 1.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    y = rng.integers(0, 2, n)
    X = rng.normal(size=(n, d)) + np.outer(2 * y - 1, u) * strength
    return X, y, u


@pytest.mark.parametrize("solver,kw", [("logreg", {}), ("paper", {"lr": 1e-2})])
def test_planted_direction_is_recovered(solver: str, kw: dict) -> None:
    X, y, u = _planted()
    probe = ToxicityProbe(solver=solver, **kw).fit(X, y)
    d = probe.direction_
    assert d.shape == (32,) and abs(float(np.linalg.norm(d)) - 1.0) < 1e-12
    assert float(d @ u) > 0.9
    assert probe.score(X, y) > 0.9
    proba = probe.predict_proba(X)
    assert proba.shape == (len(X), 2) and np.allclose(proba.sum(1), 1.0)
    assert np.array_equal(probe.predict(X), (proba[:, 1] > 0.5).astype(int))


def _reference_paper_solver(X: np.ndarray, y: np.ndarray, *, lr: float, epochs: int, seed: int = 99,
                            batch: int = 10) -> tuple[list[np.ndarray], list[float]]:
    """An independent numpy re-implementation: BCE gradient and Adam by hand, same seeded orders.

    The RNG protocol is part of the specification: the 90/10 split is ``randperm(n)`` from a
    generator seeded with ``seed`` (first 10% = validation), the init is ``nn.Linear``'s after
    ``torch.manual_seed(seed)``, and each epoch's order is the next ``randperm`` of a second
    generator seeded with ``seed``.
    """
    n = len(X)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    n_val = round(n * 0.1)
    va, tr = perm[:n_val], perm[n_val:]
    torch.manual_seed(seed)
    w = torch.nn.Linear(X.shape[1], 1, bias=False).weight.detach().double().numpy()[0]
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    b1, b2, eps, t = 0.9, 0.999, 1e-8, 0
    gen = torch.Generator().manual_seed(seed)
    weights, val_losses = [], []
    for _ in range(epochs):
        order = torch.randperm(len(tr), generator=gen).numpy()
        for s in range(0, len(order), batch):
            idx = tr[order[s:s + batch]]
            p = 1 / (1 + np.exp(-(X[idx] @ w)))
            g = X[idx].T @ (p - y[idx]) / len(idx)  # d/dw of the mean BCE
            t += 1
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            w = w - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        z = X[va] @ w
        val_losses.append(float(np.mean(np.logaddexp(0, z) - y[va] * z)))
        weights.append(w.copy())
    return weights, val_losses


def test_paper_solver_matches_independent_reimplementation() -> None:
    # Few, noisy examples with a large lr so validation loss turns up: best epoch < last epoch.
    X, y, _ = _planted(n=120, d=16, strength=0.4, seed=3)
    probe = ToxicityProbe(solver="paper", lr=0.05, epochs=12).fit(X, y)
    weights, val_losses = _reference_paper_solver(X, y, lr=0.05, epochs=12)
    got_val = [h["val_loss"] for h in probe.history_]
    np.testing.assert_allclose(got_val, val_losses, rtol=2e-3, atol=2e-4)
    best = int(np.argmin(val_losses))
    assert probe.best_epoch_ == best + 1 < 12, "test data must make a non-final epoch the best"
    np.testing.assert_allclose(probe.coef_[0], weights[best], rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(probe.direction_, weights[best] / np.linalg.norm(weights[best]), rtol=2e-3, atol=2e-4)
    assert probe.intercept_.tolist() == [0.0]  # no bias
    assert len(probe.val_idx_) == 12 and len(probe.train_idx_) == 108  # 90/10 split
    assert set(probe.val_idx_).isdisjoint(probe.train_idx_)


def test_paper_defaults_and_determinism() -> None:
    p = ToxicityProbe()
    assert (p.solver, p.lr, p.batch_size, p.epochs, p.val_fraction, p.seed) == ("paper", 1e-4, 10, 20, 0.1, 99)
    X, y, _ = _planted(n=80, d=8)
    a = ToxicityProbe(epochs=2).fit(X, y)
    b = ToxicityProbe(epochs=2).fit(X, y)
    c = ToxicityProbe(epochs=2, seed=1).fit(X, y)
    assert np.array_equal(a.coef_, b.coef_) and not np.array_equal(a.coef_, c.coef_)
    assert [h["epoch"] for h in a.history_] == [1, 2]
    assert ToxicityProbe().set_params(lr=0.5).get_params()["lr"] == 0.5
    with pytest.raises(ValueError, match="Invalid parameter 'alpha' for estimator ToxicityProbe"):
        ToxicityProbe().set_params(alpha=1.0)
    with pytest.raises(TypeError):
        ToxicityProbe("logreg")  # type: ignore[misc]  # keyword-only, as sklearn expects


def test_logreg_is_class_balanced() -> None:
    from sklearn.linear_model import LogisticRegression

    X, y, _ = _planted(n=300, d=8, seed=5)
    keep = (y == 0) | (np.arange(len(y)) % 5 == 0)  # imbalance: few toxic
    X, y = X[keep], y[keep]
    ref = LogisticRegression(class_weight="balanced", max_iter=2000).fit(X, y)
    probe = ToxicityProbe(solver="logreg").fit(X, y)
    np.testing.assert_allclose(probe.decision_function(X), ref.decision_function(X), rtol=1e-4, atol=1e-4)


def test_bad_inputs_have_clear_errors() -> None:
    X, y, _ = _planted(n=40, d=8)
    with pytest.raises(ValueError, match=r"0 sample\(s\) \(shape=\(0, 8\)\)"):
        ToxicityProbe().fit(np.zeros((0, 8)), np.zeros(0))
    with pytest.raises(ValueError, match="one class only: all 40 labels are 0"):
        ToxicityProbe().fit(X, np.zeros(40, dtype=int))
    bad = X.copy()
    bad[7, 2] = np.nan
    with pytest.raises(ValueError, match="NaN/inf values in 1 row.*first row 7"):
        ToxicityProbe().fit(bad, y)
    with pytest.raises(ValueError, match=r"inconsistent numbers of samples: \[40, 39\]"):
        ToxicityProbe().fit(X, y[:-1])
    with pytest.raises(ValueError, match=r"Only binary classification .* 3 classes \[0, 1, 2\]"):
        ToxicityProbe().fit(X, np.arange(40) % 3)
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        ToxicityProbe().fit(X, y + 0.5)
    with pytest.raises(ValueError, match="Expected 2D array, got 1D array"):
        ToxicityProbe().fit(X[:, 0], y)
    with pytest.raises(ValueError, match="solver must be one of"):
        ToxicityProbe(solver="svm").fit(X, y)  # type: ignore[arg-type]
    with pytest.raises(NotFittedError, match="not fitted yet; call fit"):
        ToxicityProbe().predict(X)
    probe = ToxicityProbe(epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="X has 6 features, but ToxicityProbe is expecting 8 features .* d_model"):
        probe.predict(X[:, :6])
    with pytest.raises(ValueError, match="NaN/inf values in 1 row.*first row 7"):
        probe.predict_proba(bad)


def test_probe_metrics_against_hand_computation() -> None:
    X, y, _ = _planted(n=200, d=8, strength=0.5, seed=2)
    probe = ToxicityProbe(solver="logreg").fit(X, y)
    m = probe_metrics(probe, X, y)
    s = probe.decision_function(X)
    pred = (s > 0).astype(int)
    pos, neg = s[y == 1], s[y == 0]
    auc = np.mean([(p > q) + 0.5 * (p == q) for p in pos for q in neg])  # Mann-Whitney
    tp, fp, fn = ((pred == 1) & (y == 1)).sum(), ((pred == 1) & (y == 0)).sum(), ((pred == 0) & (y == 1)).sum()
    assert m["accuracy"] == pytest.approx((pred == y).mean())
    assert m["roc_auc"] == pytest.approx(auc)
    assert m["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert m["n"] == 200 and m["n_toxic"] == int(y.sum())
    assert math.isnan(probe_metrics(probe, X[y == 1], y[y == 1])["roc_auc"])


def test_save_load_roundtrip_and_model_checks(tmp_path, tiny_tokenizer) -> None:
    from interp.model.loading import model_fingerprint
    from tiny_models import make_model

    model = make_model("gpt2", len(tiny_tokenizer))  # d_model 32
    X, y, _ = _planted(n=60, d=32)
    probe = ToxicityProbe(epochs=3).fit(X, y)
    probe.meta_ = {"fingerprint": model_fingerprint(model), "layer": None, "pooling": "mean", "model_id": "tiny"}
    for target in (tmp_path / "dir", tmp_path / "file" / "probe.safetensors"):
        weights = probe.save(target)
        assert weights.suffix == ".safetensors" and weights.is_file()
        loaded = ToxicityProbe.load(target, model)
        np.testing.assert_allclose(loaded.decision_function(X), probe.decision_function(X), rtol=1e-5, atol=1e-5)
        assert loaded.meta_["pooling"] == "mean" and loaded.best_epoch_ == probe.best_epoch_
        np.testing.assert_allclose(loaded.direction_, probe.direction_, rtol=1e-6, atol=1e-7)
        assert loaded.classes_.tolist() == [0, 1] and loaded.n_features_in_ == 32
        assert loaded.history_ == probe.history_ and loaded.get_params() == probe.get_params()
    assert (tmp_path / "dir" / "manifest.json").is_file()
    assert (tmp_path / "file" / "probe.manifest.json").is_file()

    other = make_model("gpt2", len(tiny_tokenizer), seed=1)  # same shape, other weights
    with pytest.raises(ProbeMismatchError, match="fingerprint .* differ"):
        ToxicityProbe.load(tmp_path / "dir", other)
    with pytest.warns(UserWarning, match="fingerprint"):
        ToxicityProbe.load(tmp_path / "dir", other, strict=False)
    wide = make_model("gpt2", len(tiny_tokenizer), d_model=16)
    with pytest.raises(ProbeMismatchError, match="probe has d_model=32 but model .* has d_model=16"):
        ToxicityProbe.load(tmp_path / "dir", wide, strict=False)
    with pytest.raises(FileNotFoundError, match="missing; expected a probe directory"):
        ToxicityProbe.load(tmp_path / "nowhere")


def test_import_reference_probe(tmp_path) -> None:
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 1, bias=False)
    torch.save(lin, tmp_path / "english-probe.pt")
    probe = import_reference_probe(tmp_path / "english-probe.pt")
    x = torch.randn(5, 16)
    np.testing.assert_allclose(probe.decision_function(x), lin(x).detach().numpy()[:, 0], rtol=1e-5, atol=1e-6)
    torch.save(torch.nn.Linear(16, 1).state_dict(), tmp_path / "sd.pt")
    assert import_reference_probe(tmp_path / "sd.pt").d_model == 16
    torch.save(torch.nn.Linear(16, 3), tmp_path / "three.pt")
    with pytest.raises(ValueError, match=r"shape \(3, 16\); a toxicity probe is \[1, d_model\]"):
        import_reference_probe(tmp_path / "three.pt")


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_rejected_without_running(tmp_path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"weight": torch.zeros(1, 4), "x": _Evil(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="refused to load.*not executed"):
        import_reference_probe(tmp_path / "evil.pt")
    assert not marker.exists()
