"""The CLI prints our own lines only: no library deprecation notes, kernel chatter, metric dicts or bars."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tiny_models import save_tiny

ROOT = Path(__file__).resolve().parents[1]


def test_dpo_train_no_progress_prints_no_library_noise(tmp_path: Path, data_root: Path) -> None:
    model = save_tiny("gpt2", tmp_path / "gpt2")
    out = tmp_path / "dpo"
    cmd = [sys.executable, "-m", "interp.app.cli", "dpo", "train", "--preset", "cpu-demo", "--model", str(model),
           "--output-dir", str(out), "--no-progress", "--set", "max_steps=2", "--set", "max_pairs=24",
           "--set", "eval_steps=1", "--set", "logging_steps=1", "--set", "heldout_texts=4",
           "--set", f"data_root={data_root}"]
    res = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "default"}, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (out / "training_log.json").is_file()  # the metrics are kept, just not printed
    noise = ("FutureWarning", "gemm_4bit", "'eval_loss'", "'train_runtime'", "it/s]", "examples/s]", "Loading weights")
    for stream, text in (("stdout", res.stdout), ("stderr", res.stderr)):
        found = [n for n in noise if n in text]
        assert not found, f"{stream} carries {found}:\n{text[-2000:]}"
