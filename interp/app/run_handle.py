"""``open_run(run_dir)``: a finished ``xdetox run`` directory as typed objects (app layer).

Notebooks and scripts read a run through this handle instead of the pipeline's internals: the base
and DPO models, the probe, the toxic neurons and every table by name. Each output is proved to
belong to the run's recorded config and data (the stage keys of :class:`interp.app.pipeline.Pipeline`)
before it is read; a stage built from something else is refused, a missing one names what exists.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, get_args

import pandas as pd
from transformer_lens.model_bridge import TransformerBridge

from interp.core.artifacts import InputError, read_json
from interp.core.configio import config_from_dict
from interp.model.loading import ModelView
from interp.neurons.ranking import ToxicNeurons
from interp.app.pipeline import STAGES, Pipeline, StaleStageError
from interp.app.run_config import RunConfig
from probes import ToxicityProbe

TableName = Literal[
    "probe_transfer", "vocab_table", "vocab_null", "value_mass",
    "metrics_before", "metrics_after", "metrics_compare",
    "key_activations", "key_activations_per_neuron", "key_ratio",
    "intervention_sweep", "retrieval", "retrieval_per_layer", "dual_multilinguality", "correlation",
]

#: table name -> (stage, output name in the stage's ``stage.json``)
TABLES: dict[str, tuple[str, str]] = {
    "probe_transfer": ("probe", "transfer"),
    "vocab_table": ("neurons", "vocab_table"),
    "vocab_null": ("neurons", "vocab_null"),
    "value_mass": ("neurons", "value_mass"),
    "metrics_before": ("metrics", "before"),
    "metrics_after": ("metrics", "after"),
    "metrics_compare": ("metrics", "compare"),
    "key_activations": ("key_activations", "summary"),
    "key_activations_per_neuron": ("key_activations", "per_neuron"),
    "key_ratio": ("key_activations", "ratio"),
    "intervention_sweep": ("intervention", "sweep"),
    "retrieval": ("retrieval", "per_language"),
    "retrieval_per_layer": ("retrieval", "per_layer"),
    "dual_multilinguality": ("correlation", "signals"),
    "correlation": ("correlation", "correlation"),
}
TABLE_NAMES: tuple[str, ...] = get_args(TableName)


class UnknownTableError(InputError, KeyError):
    """A table name that no stage writes."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class MissingStageError(InputError):
    """The run has not (or not for its recorded config) finished the stage an object comes from."""


class RunHandle:
    """A finished run: ``model()``, ``tuned_model()``, ``probe()``, ``neurons()``, ``table(name)``."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipe = pipeline

    @property
    def run_dir(self) -> Path:
        return self._pipe.run_dir

    @property
    def config(self) -> RunConfig:
        """The config the run was made with (its ``manifest.json``)."""
        return self._pipe.config

    @property
    def data_root(self) -> Path:
        return self._pipe.data_root

    def stages(self) -> list[str]:
        """Return the stages finished for this run's config, in pipeline order (stale ones left out)."""
        out = []
        for s in STAGES:
            try:
                if self._pipe.selected(s) and self._pipe.finished(s) is not None:
                    out.append(s)
            except StaleStageError:
                continue
        return out

    def tables(self) -> list[str]:
        """Return the names of the tables this run holds (see :data:`TableName`)."""
        outputs = {s: self._pipe.finished(s).outputs for s in self.stages()}  # type: ignore[union-attr]
        return [t for t, (s, out) in TABLES.items() if out in outputs.get(s, {})]

    def _require(self, stage: str, what: str) -> None:
        """Raise :class:`MissingStageError` listing what exists unless ``stage`` finished (a stale one raises)."""
        if self._pipe.finished(stage) is None:
            have = ", ".join(self.stages()) or "none"
            raise MissingStageError(
                f"{self.run_dir}: {what} comes from stage {stage!r}, which this run has not finished (finished "
                f"stages: {have}; tables: {', '.join(self.tables()) or 'none'}); run it with "
                f"`xdetox run --run-dir {self.run_dir} --only {stage}` (or the whole study without --only)")

    def model(self) -> TransformerBridge | ModelView:
        """Return the base model (a view with the adapter off when the run tuned a LoRA adapter)."""
        self._require("model", "the base model")
        return self._pipe.base_model()

    def tuned_model(self) -> TransformerBridge | ModelView:
        """Return the English-DPO model (a view sharing the base weights when the run tuned an adapter)."""
        self._require("dpo", "the DPO model")
        return self._pipe.tuned_model()

    def probe(self) -> ToxicityProbe:
        """Return the English toxicity probe the run trained."""
        self._require("probe", "the probe")
        return self._pipe.probe()

    def neurons(self) -> ToxicNeurons:
        """Return the candidate toxic neurons; ``.analysed()`` is the group every later stage uses."""
        self._require("neurons", "the toxic neurons")
        return self._pipe.neurons()

    def key_prompts(self) -> dict[str, list[str]]:
        """Return the prompt texts per language of the key-activation stage (RTP-LX: never print them)."""
        return {lang: [p.text for p in ps] for lang, ps in self._pipe.key_prompts().items()}

    def parallel_texts(self) -> dict[str, list[str]]:
        """Return the parallel sentences per language the retrieval stage read (``retrieval.parallel``)."""
        c = self.config.retrieval
        return self._pipe.parallel_texts(c.parallel, c.n_sentences)

    def table(self, name: TableName) -> pd.DataFrame:
        """Return table ``name`` of the run as a DataFrame."""
        if name not in TABLES:
            raise UnknownTableError(f"unknown table {name!r}; tables: {', '.join(TABLE_NAMES)} (this run holds: "
                                    f"{', '.join(self.tables()) or 'none'})")
        stage, output = TABLES[name]
        self._require(stage, f"table {name!r}")
        return pd.read_csv(self._pipe.output(stage, output))

    def __repr__(self) -> str:
        return f"RunHandle({str(self.run_dir)!r}, stages: {', '.join(self.stages()) or 'none'})"


def open_run(run_dir: str | os.PathLike[str], *, progress: bool = False) -> RunHandle:
    """Return a handle on the finished run in ``run_dir`` (made by ``xdetox run``), with the config it recorded."""
    d = Path(run_dir)
    manifest = d / "manifest.json"
    if not d.is_dir():
        raise InputError(f"{d}: no such run directory; make one with `xdetox run --preset demo --run-dir {d}`")
    if not manifest.is_file():
        raise InputError(f"{d}: no manifest.json, so no finished run to open; finish it with "
                         f"`xdetox run --run-dir {d}` (same preset or config)")
    data = read_json(manifest)
    if not isinstance(data, dict) or data.get("kind") != "xdetox-run" or not isinstance(data.get("config"), dict):
        raise InputError(f"{manifest}: not the manifest of an `xdetox run` (expected kind 'xdetox-run' and a "
                         "'config' object)")
    config = config_from_dict(RunConfig, data["config"], where=str(manifest))
    return RunHandle(Pipeline(config, d, progress=progress))


__all__ = ["open_run", "RunHandle", "TableName", "TABLE_NAMES", "TABLES", "UnknownTableError", "MissingStageError"]
