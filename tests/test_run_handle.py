"""``open_run`` on the smoke run: typed models, probe, neurons and every table by name, each the very
artifact its stage recorded; unknown names, missing and stale stages are clear errors naming what exists."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import get_args

import pandas as pd
import pytest

from interp.core.artifacts import InputError, read_json
from interp.neurons.ranking import NeuronRow, ToxicNeurons
from interp.app.pipeline import STAGES, StaleStageError
from interp.app import open_run
from interp.app.run_handle import TABLE_NAMES, TABLES, MissingStageError, TableName, UnknownTableError


def _stage_output(run_dir: Path, stage: str, output: str) -> Path:
    """The file a stage's own ``stage.json`` names (read independently of the handle)."""
    return run_dir / json.loads((run_dir / "stages" / stage / "stage.json").read_text())["outputs"][output]


def test_table_names_are_one_literal() -> None:
    assert tuple(TABLES) == TABLE_NAMES == get_args(TableName)
    assert {s for s, _ in TABLES.values()} <= set(STAGES)


def test_analysed_neurons_are_the_kept_ones_else_all() -> None:
    rows = [NeuronRow(rank=i + 1, layer=0, neuron=i, cosine=0.5, mean_activation=m, kept=m > 0)
            for i, m in enumerate([0.2, -0.1, 0.3])]
    assert ToxicNeurons(rows).analysed().layers_neurons() == [(0, 0), (0, 2)]
    none_kept = [NeuronRow(1, 0, 5, 0.5, -1.0, False), NeuronRow(2, 1, 3, 0.4, -2.0, False)]
    assert ToxicNeurons(none_kept).analysed().layers_neurons() == [(0, 5), (1, 3)]


def test_open_run_reads_every_table_and_object_of_the_smoke_run(smoke_run: Path) -> None:
    from transformer_lens.model_bridge import TransformerBridge

    from interp.model.loading import ModelView, model_fingerprint
    from probes import ToxicityProbe

    run = open_run(smoke_run)
    assert run.config.languages == ["en", "de", "ja", "ru", "zh"]
    assert run.stages() == list(STAGES)
    assert set(run.tables()) >= set(TABLE_NAMES) - {"vocab_null"}
    for name in run.tables():
        stage, output = TABLES[name]
        expected = pd.read_csv(_stage_output(smoke_run, stage, output))
        pd.testing.assert_frame_equal(run.table(name), expected)
    model = run.model()
    assert isinstance(model, (TransformerBridge, ModelView))
    info = read_json(_stage_output(smoke_run, "model", "model_info"))
    assert model_fingerprint(model) == info["fingerprint"]
    tuned = run.tuned_model()
    assert isinstance(tuned, (TransformerBridge, ModelView)) and model_fingerprint(tuned) != info["fingerprint"]
    probe = run.probe()
    assert isinstance(probe, ToxicityProbe)
    neurons = run.neurons()
    assert neurons.rows == ToxicNeurons.from_json(_stage_output(smoke_run, "neurons", "neurons")).rows
    assert set(run.key_prompts()) == set(run.config.languages)
    assert len(run.key_prompts()["de"]) == run.config.key_activations.n_prompts
    assert set(run.parallel_texts()) <= set(run.config.languages) and "en" in run.parallel_texts()
    assert "stages: model, probe" in repr(run)


def test_unknown_table_lists_the_names(smoke_run: Path) -> None:
    run = open_run(smoke_run)
    with pytest.raises(UnknownTableError, match=r"unknown table 'metrics'; tables: probe_transfer, .*metrics_compare") \
            as e:
        run.table("metrics")  # type: ignore[arg-type]
    assert isinstance(e.value, KeyError) and "this run holds: probe_transfer" in str(e.value)


@pytest.fixture()
def partial_run(smoke_run: Path, tmp_path: Path) -> Path:
    """A copy of the smoke run holding only its manifest and the model and probe stages."""
    d = tmp_path / "partial"
    (d / "stages").mkdir(parents=True)
    shutil.copy(smoke_run / "manifest.json", d / "manifest.json")
    for stage in ("model", "probe"):
        shutil.copytree(smoke_run / "stages" / stage, d / "stages" / stage)
    return d


def test_missing_stage_names_what_exists(partial_run: Path) -> None:
    run = open_run(partial_run)
    assert run.stages() == ["model", "probe"] and run.tables() == ["probe_transfer"]
    assert len(run.table("probe_transfer"))
    with pytest.raises(MissingStageError, match=r"stage 'correlation'.*finished stages: model, probe; tables: "
                                                 r"probe_transfer\).*--only correlation"):
        run.table("correlation")
    with pytest.raises(MissingStageError, match="the DPO model comes from stage 'dpo'"):
        run.tuned_model()
    with pytest.raises(MissingStageError, match="the toxic neurons"):
        run.neurons()


def test_a_stage_of_another_config_is_refused(partial_run: Path) -> None:
    """A manifest whose config differs from what built a stage: the stage is not served (stale)."""
    manifest = json.loads((partial_run / "manifest.json").read_text())
    manifest["config"]["probe"]["max_examples"] += 1
    (partial_run / "manifest.json").write_text(json.dumps(manifest))
    run = open_run(partial_run)
    assert run.stages() == ["model"]
    with pytest.raises(StaleStageError, match="stage 'probe'"):
        run.probe()


def test_open_run_refuses_what_is_not_a_finished_run(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such run directory"):
        open_run(tmp_path / "nope")
    with pytest.raises(InputError, match="no manifest.json"):
        open_run(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "toxic-neurons", "config": {}}))
    with pytest.raises(InputError, match="not the manifest of an `xdetox run`"):
        open_run(tmp_path)


def test_the_report_is_rebuilt_from_the_run_directory_alone(smoke_run: Path, tmp_path: Path) -> None:
    """``build_report(open_run(d))`` on a copy of the run (report removed) writes the summary the report
    stage wrote, and refuses a run whose stage outputs belong to another config."""
    from interp.app.run_report import build_report

    copy = tmp_path / "run"
    shutil.copytree(smoke_run, copy, ignore=shutil.ignore_patterns("*.safetensors", "checkpoint-*"))
    (copy / "summary.json").unlink()
    (copy / "report.html").unlink()
    html, summary = build_report(open_run(copy))
    assert html == copy / "report.html" and html.is_file()
    assert read_json(summary) == read_json(smoke_run / "summary.json")
    stage_json = copy / "stages" / "metrics" / "stage.json"
    record = read_json(stage_json)
    stage_json.write_text(json.dumps({**record, "key": "another-config"}))
    with pytest.raises(StaleStageError, match="metrics"):
        build_report(open_run(copy))
    stage_json.write_text(json.dumps(record))
    manifest = read_json(copy / "manifest.json")  # the run's recorded config changed: its stages are not its own
    manifest["config"]["probe"]["seed"] = (manifest["config"]["probe"].get("seed") or 0) + 7
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StaleStageError, match="probe"):
        build_report(open_run(copy))
    (copy / "manifest.json").write_text(json.dumps(read_json(smoke_run / "manifest.json")))
    scored = _stage_output(copy, "score", "before")
    scored.unlink()  # a recorded output that is gone is named, not a raw FileNotFoundError
    with pytest.raises(MissingStageError, match="score"):
        build_report(open_run(copy))


def test_a_handle_walks_each_data_tree_once(smoke_run: Path, monkeypatch) -> None:
    """Every dependent stage's key recomputes the model stage's; the data root and the gettext folder
    are still walked once per handle (they were walked once per key: ~0.7 s each, minutes per handle),
    and the model stage's build name uses those same fingerprints."""
    import interp.app.pipeline as pipeline_mod
    import interp.core.artifacts as artifacts

    walks: list[str] = []
    real = artifacts.tree_fingerprint

    def counting(root, *args, **kwargs):
        walks.append(str(root))
        return real(root, *args, **kwargs)

    monkeypatch.setattr(artifacts, "tree_fingerprint", counting)
    monkeypatch.setattr(pipeline_mod, "tree_fingerprint", counting)
    run = open_run(smoke_run)
    assert run.stages() == list(STAGES) and run.tables()
    run.table("correlation")
    from interp.data.sources import GETTEXT_DIR

    assert sorted(walks) == sorted([str(run.data_root), GETTEXT_DIR]), walks
