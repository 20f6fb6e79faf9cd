"""The layers are import-linter contracts (pyproject.toml [tool.importlinter]); architecture names live in one module."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold() -> None:
    """interp's folders are layers, only interp.app imports probes/detox_train, nothing imports the app, no cycles."""
    lint = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([str(lint), "--no-cache", str(ROOT / "pyproject.toml")], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout and "5 kept" in proc.stdout, proc.stdout[-2000:]
    assert "ignored" not in proc.stdout and "ignore_imports" not in (ROOT / "pyproject.toml").read_text()


@pytest.mark.parametrize("module, planted, expect", [
    ("interp/core/paths.py", "from interp.app import pipeline", "interp.core.paths -> interp.app.pipeline"),
    ("probes/train.py", "from interp.app import pipeline", "probes.train -> interp.app.pipeline"),
    ("interp/neurons/ranking.py", "import probes", "interp.neurons.ranking -> probes"),
    ("detox_train/merge.py", "import probes", "detox_train.merge -> probes"),
    ("interp/data/records.py", "from interp.data import sources", "No cycles are allowed in interp.data"),
    ("interp/default_model/train.py", "from interp.model.lm_loss import lm_loss",
     "interp.default_model.train -> interp.model.lm_loss"),
    ("interp/model/lm_loss.py", "from interp.model.loading import load_model", "No cycles are allowed in interp.model"),
])
def test_import_linter_catches_a_violation(tmp_path: Path, module: str, planted: str, expect: str) -> None:
    """Each contract fails when a planted import breaks it (proof that the checks can fail)."""
    import shutil

    for pkg in ("interp", "probes", "detox_train"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    bad = tmp_path / module
    bad.write_text(bad.read_text(encoding="utf-8") + f"\n\ndef _planted():\n    {planted}  # noqa\n", encoding="utf-8")
    lint = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(lint), "--no-cache"], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)},
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert expect in proc.stdout, proc.stdout[-3000:]


def test_only_architecture_module_names_families() -> None:
    """No module other than the adapter may branch on model families by name."""
    needles = ("GPT2LMHeadModel", "BloomForCausalLM", "LlamaForCausalLM", "CohereForCausalLM",
               "dense_4h_to_h", "down_proj", "c_proj", "BertForMaskedLM", "RobertaForMaskedLM",
               "intermediate.dense", "output.LayerNorm")
    # The e5 converter writes BertModel's parameter names (it builds that checkpoint, as default_model builds GPT-2).
    allowed = {"interp/default_model/train.py": {"GPT2LMHeadModel"}, "interp/default_model/build.py": {"GPT2LMHeadModel"},
               "interp/model/e5.py": {"intermediate.dense", "output.LayerNorm"}}
    offenders = []
    for pkg in ("interp", "probes", "detox_train"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if path.name == "architecture.py":
                continue
            text = path.read_text(encoding="utf-8")
            hits = set(n for n in needles if n in text) - allowed.get(str(path.relative_to(ROOT)), set())
            if hits:
                offenders.append(f"{path.relative_to(ROOT)}: {sorted(hits)}")
    assert not offenders, offenders
