"""The handle :func:`interp.app.open_run` returns: a finished ``xdetox run`` directory as typed objects (app layer).

Notebooks and scripts read a run through this handle instead of the pipeline's internals: the base
and DPO models, the probe, the toxic neurons and every table by name. Each output is proved to
belong to the run's recorded config and data (the stage keys of :class:`interp.app.pipeline.Pipeline`)
before it is read; a stage built from something else is refused, a missing one names what exists.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import pandas as pd
from transformer_lens.model_bridge import TransformerBridge

from interp.core.artifacts import InputError
from interp.data.records import Prompt
from interp.model.loading import ModelView
from interp.neurons.ranking import ToxicNeurons
from interp.app.run_config import RunConfig
from probes import ToxicityProbe

if TYPE_CHECKING:  # the pipeline imports this module's reader (the report stage), not the other way round
    from interp.app.pipeline import Pipeline

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

    def __init__(self, pipeline: "Pipeline") -> None:
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

    def selected(self, stage: str) -> bool:
        """Whether the run's config runs ``stage`` (``stages: [...]`` restricts a preset to some stages)."""
        return self._pipe.selected(stage)

    def data_fingerprint(self) -> str:
        """Return the content fingerprint of the run's data root (every file's path and sha256)."""
        return self._pipe.data_fingerprint()

    def rtplx_prompts(self) -> list[Prompt]:
        """Return the run's RTP-LX prompts (ids and texts: the report checks its pages against them; never print them)."""
        return self._pipe.rtplx()

    def stages(self) -> list[str]:
        """Return the stages finished for this run's config, in pipeline order (stale ones left out)."""
        return self._pipe.finished_stages()

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

    def artifact(self, stage: str, output: str) -> Path:
        """Return the path of file ``output`` that ``stage`` recorded in its ``stage.json`` for this run's config."""
        self._require(stage, f"output {output!r}")
        path = self._pipe.output(stage, output)
        if not path.exists():
            raise MissingStageError(f"{path}: stage {stage!r} recorded output {output!r} here, but it is gone; rerun "
                                    f"it with `xdetox run --run-dir {self.run_dir} --only {stage} --force {stage}`")
        return path

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


__all__ = ["RunHandle", "TableName", "TABLE_NAMES", "TABLES", "UnknownTableError", "MissingStageError"]
