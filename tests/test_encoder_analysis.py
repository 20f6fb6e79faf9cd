"""The `encoder-analysis` preset end to end on the real multilingual-e5-small (small sizes), its cache and rerun."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

SMALL = ["--set", "languages=[en, de, ja, ru, ar]", "--set", "encoder.probe_examples=300",
         "--set", "encoder.transfer_prompts=24", "--set", "encoder.top_k=12", "--set", "encoder.filter_prompts=6",
         "--set", "encoder.vocab_k=10", "--set", "encoder.top_vectors=6", "--set", "encoder.key_prompts=4",
         "--set", "encoder.n_sentences=20", "--set", "encoder.n_boot=50", "--set", "encoder.n_perm=50"]


def _run(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "interp.app.cli", "run", "--preset", "encoder-analysis", "--run-dir", str(run_dir),
           "--no-progress", *SMALL, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def encoder_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    run_dir = tmp_path_factory.mktemp("encoder_run")
    return run_dir, _run(run_dir)


def test_preset_runs_and_reports(encoder_run, data_root):
    from interp.data.rtplx import load_rtplx

    run_dir, r = encoder_run
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in (run_dir / "stages").iterdir()) == ["encoder", "report"]
    summary = json.loads((run_dir / "summary.json").read_text())
    bars = summary["encoder_analysis"]["bars"]
    d = run_dir / "stages" / "encoder"
    per_layer = pd.read_csv(d / "retrieval_per_layer.csv")
    assert set(per_layer["layer"]) == set(range(13)) and set(per_layer["lang"]) == {"de", "ja", "ru", "ar"}
    last = per_layer[per_layer["layer"] == 12]
    assert bars["retrieval_last_layer_mean"] == pytest.approx(float(last["acc_mean"].mean()), abs=1e-6)
    transfer = pd.read_csv(d / "transfer.csv")
    assert {"auc_lo", "auc_hi"} <= set(transfer.columns) and len(transfer) == 5
    ok = transfer.dropna(subset=["auc"])
    assert ((ok["auc_lo"] <= ok["auc"]) & (ok["auc"] <= ok["auc_hi"])).all()
    neurons = json.loads((d / "neurons.json").read_text())
    assert neurons["meta"]["filter"]["positions"] == "prompt" and len(neurons["rows"]) == 12
    per_vector = pd.read_csv(d / "per_vector.csv")
    hits = (per_vector[[c for c in per_vector.columns if c.startswith("hits_")]] > 0).sum(axis=1) >= 3
    assert bars["top_vectors_multilingual_lexicon"] == int(hits.sum())
    corr = pd.read_csv(d / "correlation.csv")
    assert {"retrieval_acc", "retrieval_last_layer"} <= set(corr["signal"])
    assert set(corr["outcome"]) == {"probe_auc", "key_ratio"}
    html = (run_dir / "report.html").read_text()
    assert "Encoder analysis on real pretrained weights" in html
    for p in load_rtplx(data_root, ["en", "de", "ja", "ru", "ar"]):
        if len(p.text) > 40:
            assert p.text not in html


def test_rerun_is_cached_and_config_change_reruns(encoder_run):
    run_dir, first = encoder_run
    assert first.returncode == 0
    again = _run(run_dir)
    assert again.returncode == 0 and "[encoder] cached" in again.stdout
    changed = _run(run_dir, "--set", "encoder.top_k=10")
    assert changed.returncode == 0 and "[encoder] cached" not in changed.stdout, changed.stderr[-2000:]
    neurons = json.loads((run_dir / "stages" / "encoder" / "neurons.json").read_text())
    assert len(neurons["rows"]) == 10


def test_key_gap_ratio_independent():
    from interp.app.encoder_analysis import key_gap_ratio

    toxic = pd.DataFrame({"lang": ["en", "de", "ja"], "mean": [-0.05, -0.08, -0.02]})
    clean = pd.DataFrame({"lang": ["ja", "en", "de"], "mean": [-0.03, -0.15, -0.10]})
    out = key_gap_ratio(toxic, clean).set_index("lang")
    # gaps: en 0.10, de 0.02, ja 0.01 -> ratios 1, 0.2, 0.1; raw means are negative -> activation_ratio NaN
    assert out.loc["de", "key_ratio"] == pytest.approx(0.2) and out.loc["ja", "key_ratio"] == pytest.approx(0.1)
    assert out.loc["en", "gap"] == pytest.approx(0.10) and out["activation_ratio"].isna().all()
    neg = key_gap_ratio(toxic, clean.assign(mean=[0.0, 0.0, 0.0]))
    assert neg["key_ratio"].isna().all()
