"""interp's core modules must not import probes or detox_train (only the app layer ties them)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP_LAYER = {"cli.py", "pipeline.py", "pipeline_report.py", "quality.py", "encoder_analysis.py", "run_handle.py"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def test_interp_core_does_not_import_probes_or_training() -> None:
    offenders = []
    for path in sorted((ROOT / "interp").glob("*.py")):
        if path.name in APP_LAYER or path.name.startswith("cli_"):
            continue
        bad = _imports(path) & {"probes", "detox_train"}
        if bad:
            offenders.append(f"{path.name} imports {sorted(bad)}")
    assert not offenders, offenders


def test_only_architecture_module_names_families() -> None:
    """No module other than the adapter may branch on model families by name."""
    needles = ("GPT2LMHeadModel", "BloomForCausalLM", "LlamaForCausalLM", "CohereForCausalLM",
               "dense_4h_to_h", "down_proj", "c_proj", "BertForMaskedLM", "RobertaForMaskedLM",
               "intermediate.dense", "output.LayerNorm")
    # The e5 converter writes BertModel's parameter names (it builds that checkpoint, as default_model builds GPT-2).
    allowed = {"default_model.py": {"GPT2LMHeadModel"}, "e5_weights.py": {"intermediate.dense", "output.LayerNorm"}}
    offenders = []
    for pkg in ("interp", "probes", "detox_train"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if path.name == "architecture.py":
                continue
            text = path.read_text(encoding="utf-8")
            hits = set(n for n in needles if n in text) - allowed.get(path.name, set())
            if hits:
                offenders.append(f"{path.relative_to(ROOT)}: {sorted(hits)}")
    assert not offenders, offenders
