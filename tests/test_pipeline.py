"""End-to-end: the smoke preset runs every stage, caches, resumes after kill -9, rejects bad configs."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from interp.core.configio import ConfigError
from interp.app.pipeline import STAGES, Pipeline
from interp.app.run_config import load_run_config

ROOT = Path(__file__).resolve().parents[1]


def test_smoke_preset_runs_every_stage(smoke_run: Path) -> None:
    for stage in STAGES:
        marker = smoke_run / "stages" / stage / "stage.json"
        assert marker.is_file(), f"stage {stage} did not finish"
    html = (smoke_run / "report.html").read_text(encoding="utf-8")
    summary = json.loads((smoke_run / "summary.json").read_text())
    assert "<html" in html.lower() and summary["languages"]
    manifest = json.loads((smoke_run / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["versions"]["torch"]


def test_report_has_no_rtplx_prompt_text(smoke_run: Path, data_root: Path) -> None:
    from interp.data.rtplx import load_rtplx

    html = (smoke_run / "report.html").read_text(encoding="utf-8")
    summary = (smoke_run / "summary.json").read_text(encoding="utf-8")
    cfg = load_run_config(preset="smoke")
    leaked = [p.id for p in load_rtplx(data_root, cfg.languages) if len(p.text) >= 20 and (p.text in html or p.text in summary)]
    assert not leaked, f"RTP-LX prompt text leaked into the report: {leaked[:5]}"


def test_rerun_skips_finished_stages(smoke_run: Path) -> None:
    logs: list[str] = []
    pipe = Pipeline(load_run_config(preset="smoke"), smoke_run, progress=False, log=logs.append)
    t0 = time.perf_counter()
    pipe.run()
    assert all("cached" in line for line in logs), logs
    assert time.perf_counter() - t0 < 30


def test_kill_mid_stage_then_rerun_gives_same_summary(smoke_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    # Reuse the finished upstream stages (model..dpo) so only generation onwards reruns.
    for stage in ("model", "probe", "neurons", "dpo"):
        shutil.copytree(smoke_run / "stages" / stage, run_dir / "stages" / stage)
    cmd = [sys.executable, "-m", "interp.app.cli", "run", "--preset", "smoke", "--run-dir", str(run_dir),
           "--no-progress", "--set", "evaluation.batch_size=1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = run_dir / "stages" / "generate" / "samples_before.jsonl"
    deadline = time.time() + 300
    killed_mid_stage = False
    while time.time() < deadline and proc.poll() is None:
        if samples.is_file() and samples.read_bytes().count(b"\n") >= 2:
            proc.send_signal(signal.SIGKILL)
            killed_mid_stage = not (run_dir / "stages" / "generate" / "stage.json").exists()
            break
        time.sleep(0.005)
    proc.wait(timeout=60)
    assert killed_mid_stage, "the run was not killed inside the generate stage"
    rerun = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    lines = (run_dir / "stages" / "generate" / "samples_before.jsonl").read_text().splitlines()
    keys = [(json.loads(l)["prompt_id"], json.loads(l)["sample_index"]) for l in lines]
    assert len(keys) == len(set(keys)), "resumed generation duplicated samples"
    a = json.loads((smoke_run / "summary.json").read_text())
    b = json.loads((run_dir / "summary.json").read_text())
    assert a == b


def test_bad_config_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("languages: [en, de, zz]\n")
    with pytest.raises(ConfigError, match="zz"):
        load_run_config(config=bad)
    bad.write_text("evaluation: {k: many}\n")
    with pytest.raises(ConfigError, match="evaluation.k"):
        load_run_config(config=bad)
    bad.write_text("evaluation: {samples: 3}\n")
    with pytest.raises(ConfigError, match="evaluation.samples"):
        load_run_config(config=bad)
    bad.write_text("model: {name: /no/such/model}\n")
    cfg = load_run_config(config=bad)
    with pytest.raises(FileNotFoundError, match="/no/such/model"):
        Pipeline(cfg, tmp_path / "run", progress=False).run(only=["model"])
    with pytest.raises(ConfigError, match="unknown stage 'modle'"):
        Pipeline(cfg, tmp_path / "run", progress=False).run(only=["modle"])


def test_cli_reports_bad_config_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("probe: {solver: magic}\n")
    res = subprocess.run([sys.executable, "-m", "interp.app.cli", "run", "--config", str(bad)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "probe.solver" in res.stderr and "Traceback" not in res.stderr
