"""`xdetox neurons find | project | intervene` on a tiny saved model."""
from __future__ import annotations

import argparse

import pytest
import torch

from interp.core.artifacts import save_tensors
from interp.app.cli_neurons import load_probe_direction, register
from interp.neurons.ranking import ToxicNeurons




def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="xdetox")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


def test_find_project_intervene(tiny_dirs, tmp_path, capsys) -> None:
    model = str(tiny_dirs["gpt2"])
    probe = tmp_path / "probe"
    probe.mkdir()
    save_tensors(probe / "probe.safetensors", {"weight": torch.randn(1, 32), "bias": torch.zeros(1)})
    prompts = tmp_path / "p.txt"
    prompts.write_text("I want to\nyou are a stupid\n")
    common = ["--model", model, "--device", "cpu", "--dtype", "float32"]
    out = tmp_path / "neurons.json"
    assert run(["neurons", "find", *common, "--probe", str(probe), "--top-k", "6", "--filter-file", str(prompts),
                "--n-new-tokens", "3", "--keep", "all", "--out", str(out)]) == 0
    table = ToxicNeurons.from_json(out)
    assert len(table) == 6 and all(r.mean_activation is not None for r in table)
    assert run(["neurons", "project", *common, "--neurons", str(out), "--k", "5", "--out-dir", str(tmp_path / "v")]) == 0
    assert (tmp_path / "v" / "value_language_mass.csv").is_file() and (tmp_path / "v" / "manifest.json").is_file()
    assert run(["neurons", "intervene", *common, "--neuron", "1:3", "--value", "50", "--prompt", "I want to",
                "--max-new-tokens", "4"]) == 0
    assert "intervention:" in capsys.readouterr().out


def test_probe_file_errors(tmp_path, tiny_dirs) -> None:
    f = tmp_path / "x.safetensors"
    save_tensors(f, {"other": torch.randn(3)})
    with pytest.raises(ValueError, match="'direction' or 'weight'"):
        load_probe_direction(f)
    save_tensors(f, {"direction": torch.randn(16)})
    assert load_probe_direction(f).shape == (16,)
    from interp.neurons.ranking import ProbeDimensionError
    with pytest.raises(ProbeDimensionError, match="d_model=32"):
        run(["neurons", "find", "--model", str(tiny_dirs["gpt2"]), "--device", "cpu", "--probe", str(f),
             "--out", str(tmp_path / "o.json")])
    with pytest.raises(ValueError, match="LAYER:INDEX"):
        run(["neurons", "intervene", "--model", str(tiny_dirs["gpt2"]), "--neuron", "3", "--prompt", "x"])
