"""The CLI boundary (issue 14): Ctrl-C, bugs, secrets in URLs, refused commands that must not
damage earlier output, file modes, and kill -9 followed by a resume with another config."""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
ROOT = Path(__file__).resolve().parents[1]
SENTINEL = "SENTINEL-s3cr3t-9f1c"


def _main(argv: list[str]) -> tuple[int, str]:
    from interp.app.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    return rc, err.getvalue()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from tiny_models import save_tiny

    return save_tiny("gpt2", tmp_path_factory.mktemp("tiny") / "gpt2")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _gen_cmd(tiny: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "interp.app.cli", "eval", "generate", "--model", str(tiny), "--languages", "en",
            "--n-prompts", "12", "--k", "2", "--max-new-tokens", "6", "--batch-size", "1", "--out", str(out), *extra]


def _wait_lines(path: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        time.sleep(0.01)


def test_unknown_exception_shows_traceback_and_asks_for_a_report(monkeypatch) -> None:
    import interp.app.cli_data as cd

    def boom(args):
        raise RuntimeError("internal invariant broken")

    monkeypatch.setattr(cd, "_run_check", boom)
    rc, err = _main(["data", "check"])
    assert rc == 1
    assert "Traceback (most recent call last)" in err and "internal invariant broken" in err
    assert "bug" in err.splitlines()[-1] and "report" in err.splitlines()[-1]


def test_user_errors_are_one_line_without_traceback(tmp_path) -> None:
    rc, err = _main(["run", "--config", str(tmp_path / "missing.yaml")])
    assert rc == 2 and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1


def test_ctrl_c_prints_one_resumable_line_and_exits_130(tiny, tmp_path) -> None:
    out = tmp_path / "s.jsonl"
    # A shell without job control starts background jobs with SIGINT ignored, and a child keeps an
    # ignored signal across exec (Python then installs no Ctrl-C handler). With a Python handler here
    # the child starts with the default, as a terminal user's run does.
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(_gen_cmd(tiny, out), env=_env(), stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, before)
    _wait_lines(out, 2, proc)
    assert out.exists() and out.read_bytes().count(b"\n") >= 2, "no samples written within the wait"
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    lines = [line for line in err.splitlines() if line.startswith("xdetox:")]
    assert len(lines) == 1 and "resume" in lines[0], err
    # ... and it does resume: the rerun completes the file.
    done = subprocess.run(_gen_cmd(tiny, out), env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes().count(b"\n") == 24


def test_kill9_then_resume_with_other_settings_refuses_to_mix(tiny, tmp_path) -> None:
    out = tmp_path / "s.jsonl"
    proc = subprocess.Popen(_gen_cmd(tiny, out), env=_env(), stderr=subprocess.DEVNULL)
    _wait_lines(out, 4, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n = out.read_bytes().count(b"\n")
    assert 4 <= n < 24, "the run was not interrupted mid-way"
    before = out.read_bytes()
    manifest = out.with_name(out.name + ".manifest.json").read_bytes()
    # The config changed between the kill and the resume: temperature, then k.
    for change in (["--temperature", "0.5"], ["--seed", "3"]):
        argv = [a for a in _gen_cmd(tiny, out, *change)[3:]]
        rc, err = _main(argv)
        assert rc == 2 and "Traceback" not in err
        assert "other settings" in err and str(out) in err
        assert out.read_bytes() == before, "a refused resume changed the samples"
        assert out.with_name(out.name + ".manifest.json").read_bytes() == manifest
    # The same settings resume, and the result equals an uninterrupted run.
    assert _main(_gen_cmd(tiny, out)[3:])[0] == 0
    clean = tmp_path / "clean.jsonl"
    assert _main(_gen_cmd(tiny, clean)[3:])[0] == 0
    assert out.read_bytes() == clean.read_bytes()


def test_kill9_then_resume_scores_with_another_scorer_refuses_and_keeps_the_manifest(tmp_path) -> None:
    samples = tmp_path / "s.jsonl"
    samples.write_text("".join(json.dumps({"prompt_id": f"rtplx:en:{i}", "lang": "en", "sample_index": 0,
                                           "text": f"text number {i}", "n_tokens": 3}) + "\n" for i in range(20)))
    out = tmp_path / "o.jsonl"
    assert _main(["eval", "score", "--scorer", "lexicon", "--no-cache", "--samples", str(samples),
                  "--out", str(out)])[0] == 0
    # A torn last line, as kill -9 leaves it, then a resume with another scorer.
    data = out.read_bytes()
    out.write_bytes(data[: len(data) - 40])
    mpath = out.with_name(out.name + ".manifest.json")
    manifest, torn = mpath.read_bytes(), out.read_bytes()
    # Another scorer version: the same lexicon scorer over a data root whose English list changed.
    from interp.core.paths import data_root

    other = tmp_path / "data"
    for ds in data_root().iterdir():
        (other / ds.name).mkdir(parents=True)
        for f in ds.iterdir():
            (other / ds.name / f.name).symlink_to(f)
    en = other / "ldnoobw" / "en.txt"
    text = en.read_text()
    en.unlink()
    en.write_text(text + "zzyzxnewword\n")
    rc, err = _main(["eval", "score", "--scorer", "lexicon", "--no-cache", "--data-root", str(other),
                     "--samples", str(samples), "--out", str(out)])
    assert rc == 2 and "another --out" in err and "Traceback" not in err
    # Only the torn (incomplete) last line may go; every complete record and the manifest stay.
    assert mpath.read_bytes() == manifest and out.read_bytes() == torn[: torn.rfind(b"\n") + 1]
    # The same scorer resumes and repairs the torn line.
    assert _main(["eval", "score", "--scorer", "lexicon", "--no-cache", "--samples", str(samples),
                  "--out", str(out)])[0] == 0
    assert out.read_bytes() == data


def test_refused_eval_score_keeps_the_existing_manifest(tmp_path) -> None:
    samples = tmp_path / "s.jsonl"
    samples.write_text(json.dumps({"prompt_id": "a", "lang": "en", "sample_index": 0, "text": "hi",
                                   "n_tokens": 1}) + "\n")
    out = tmp_path / "o.jsonl"
    out.write_text(json.dumps({"prompt_id": "a", "lang": "en", "sample_index": 0, "text": "hi", "n_tokens": 1,
                               "score": 0.1, "failed": False, "error": None, "scorer": "e5@x",
                               "truncated": False}) + "\n")
    mpath = out.with_name(out.name + ".manifest.json")
    mpath.write_text('{"kind": "eval-scores", "config": {"scorer": "e5@x"}}\n')
    before = mpath.read_bytes()
    rc, err = _main(["eval", "score", "--scorer", "lexicon", "--no-cache", "--samples", str(samples),
                     "--out", str(out)])
    assert rc == 2 and "another --out" in err
    assert mpath.read_bytes() == before


def test_refused_run_does_not_rewrite_the_run_manifest(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text('{"kind": "xdetox-run", "mine": true}\n')
    for bad in (["--set", "evaluation.scorer=bogus"], ["--only", "report"], ["--set", "dpo.preset=nope"]):
        rc, err = _main(["run", "--preset", "smoke", "--no-progress", "--run-dir", str(run), *bad])
        assert rc == 2 and "Traceback" not in err
        assert json.loads((run / "manifest.json").read_text()) == {"kind": "xdetox-run", "mine": True}
    assert not (run / "stages").exists() or not any((run / "stages").rglob("stage.json"))


def test_urls_are_redacted_in_manifests_and_reports(tmp_path, monkeypatch) -> None:
    from interp.core.artifacts import make_manifest, redact_url
    from interp.viz.report import write_report
    from interp.app.run_config import load_run_config

    url = f"https://user:{SENTINEL}@proxy.example.org:8443/v1/analyze?key={SENTINEL}&x=1#frag{SENTINEL}"
    assert SENTINEL not in redact_url(url)
    assert "proxy.example.org:8443/v1/analyze" in redact_url(url)
    cfg = load_run_config(preset="smoke", overrides={"evaluation.scorer": "perspective",
                                                     "evaluation.scorer_options": {"base_url": url}})
    monkeypatch.setattr(sys, "argv", ["xdetox", "eval", "score", "--perspective-url", url])
    manifest = make_manifest(kind="xdetox-run", config=cfg, inputs={"endpoint": url}, extra={"u": [url]})
    assert SENTINEL not in json.dumps(manifest)
    html, summary = write_report(tmp_path, sections={"Overview": ["x"]}, manifest=manifest,
                                 scorer_identity={"id": "perspective", "version": "v"}, summary={"a": 1})
    assert SENTINEL not in Path(html).read_text() and SENTINEL not in Path(summary).read_text()


def test_unreachable_perspective_fails_fast_without_leaking_the_url_secret(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PERSPECTIVE_API_KEY", "k")
    samples = tmp_path / "s.jsonl"
    samples.write_text("".join(json.dumps({"prompt_id": f"p{i}", "lang": "en", "sample_index": 0, "text": "hi",
                                           "n_tokens": 1}) + "\n" for i in range(40)))
    t0 = time.time()
    rc, err = _main(["eval", "score", "--scorer", "perspective", "--no-cache", "--max-retries", "2",
                     "--perspective-url", f"http://127.0.0.1:9/analyze?key={SENTINEL}",
                     "--samples", str(samples), "--out", str(tmp_path / "o.jsonl")])
    assert rc == 2 and "unreachable" in err and SENTINEL not in err
    assert "retrying up to 2 times" in err  # the first failure is reported when it happens
    assert time.time() - t0 < 30, "40 unreachable texts must not each wait out their retries"


def test_perspective_time_limit_marks_the_rest_failed(monkeypatch) -> None:
    from detox_train.evaluate.scorers.perspective import PerspectiveScorer

    monkeypatch.setenv("PERSPECTIVE_API_KEY", "k")
    s = PerspectiveScorer(max_total_s=0.0, max_retries=0)
    s._n_ok = 1  # pretend the endpoint answered before: the limit, not reachability, decides
    time.sleep(0.01)
    res = s.score(["a", "b"], ["en", "en"])
    assert all(r.failed and "time limit" in r.error for r in res)


def test_written_files_have_the_umask_mode_not_0600(tmp_path) -> None:
    from interp.core.artifacts import fix_permissions, write_json

    umask = os.umask(0o022)
    try:
        p = write_json(tmp_path / "a.json", {"x": 1})
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
        q = tmp_path / "d" / "model.safetensors"
        q.parent.mkdir()
        q.write_bytes(b"x")
        os.chmod(q, 0o600)
        fix_permissions(q.parent)
        assert stat.S_IMODE(q.stat().st_mode) == 0o644
    finally:
        os.umask(umask)


def test_dpo_writes_model_files_with_the_umask_mode(tiny, tmp_path) -> None:
    """End to end: the DPO output (model.safetensors included) is not left at mode 0600."""
    from detox_train import DPOTrainConfig, train_dpo
    from interp.data.records import PreferencePair

    pairs = [PreferencePair(f"p{i}", "Say", f" nice words {i}", f" stupid idiot {i}", "t") for i in range(8)]
    cfg = DPOTrainConfig.preset("cpu-demo", model=str(tiny), output_dir=str(tmp_path / "dpo"), max_steps=1,
                                eval_fraction=0.0, report_to="none")
    umask = os.umask(0o022)
    try:
        out = train_dpo(cfg, pairs=pairs)
    finally:
        os.umask(umask)
    files = [p for p in Path(out).iterdir() if p.is_file()]
    assert any(p.name.endswith(".safetensors") for p in files)
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o044 == 0o044 for p in files), \
        {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files}


def test_truncated_safetensors_is_named_and_derived_cache_rebuilt(tmp_path) -> None:
    from interp.core.artifacts import CorruptFileError, check_safetensors, load_tensors, save_tensors

    import torch

    p = save_tensors(tmp_path / "t.safetensors", {"a": torch.arange(100.0)})
    check_safetensors(p)
    data = p.read_bytes()
    for bad in (data[:-8], data[:5], b"\x00" * 64, os.urandom(200)):
        p.write_bytes(bad)
        with pytest.raises(CorruptFileError, match="t.safetensors"):
            load_tensors(p)


def test_model_without_tokenizer_loads_for_weight_only_analysis(tiny, tmp_path) -> None:
    """find_toxic_neurons needs no tokenizer: a folder without one loads; intervene says what is missing."""
    import shutil

    import torch

    from interp.core.artifacts import save_tensors

    m = tmp_path / "m"
    shutil.copytree(tiny, m)
    for f in m.glob("tokenizer*"):
        f.unlink()
    probe = save_tensors(tmp_path / "p.safetensors", {"direction": torch.randn(32)})
    rc, err = _main(["neurons", "find", "--model", str(m), "--probe", str(probe), "--top-k", "5",
                     "--out", str(tmp_path / "n.json")])
    assert rc == 0, err
    assert json.loads((tmp_path / "n.json").read_text())["rows"]
    rc, err = _main(["neurons", "intervene", "--model", str(m), "--neuron", "0:1", "--prompt", "hi"])
    assert rc == 2 and "tokenizer" in err and "Traceback" not in err


def test_damaged_default_model_cache_is_detected_and_rebuilt(tmp_path, monkeypatch, caplog) -> None:
    from interp.core.artifacts import check_safetensors, read_json
    from interp.default_model.build import default_model_dir, is_built
    from interp.model.lm_loss import lm_loss

    monkeypatch.setenv("XDETOX_CACHE", str(tmp_path / "cache"))
    d = default_model_dir("smoke", progress=False, heldout_loss=lm_loss)
    weights = d / "model.safetensors"
    assert read_json(d / "manifest.json")["files"]["model.safetensors"]["size"] == weights.stat().st_size
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # truncated
    with caplog.at_level("WARNING"):
        assert not is_built(d)
    assert "model.safetensors" in caplog.text and "rebuilding" in caplog.text
    d2 = default_model_dir("smoke", progress=False, heldout_loss=lm_loss)
    assert d2 == d and is_built(d)
    check_safetensors(d / "model.safetensors")
    # Same size, other bytes: only the recorded sha256 can tell.
    raw = bytearray((d / "model.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (d / "model.safetensors").write_bytes(bytes(raw))
    assert not is_built(d)


def test_damaged_feature_cache_entry_is_rebuilt(tiny, tmp_path) -> None:
    from interp.model.loading import load_model
    from probes.features import extract_features

    model = load_model(str(tiny))
    texts = ["you are nice", "you are an idiot", "hello there"]
    a = extract_features(model, texts, cache_dir=tmp_path, progress=False)
    (entry,) = list(tmp_path.glob("*.safetensors"))
    data = entry.read_bytes()
    entry.write_bytes(data[: len(data) - 10])
    b = extract_features(model, texts, cache_dir=tmp_path, progress=False)
    assert (a == b).all()
    assert entry.read_bytes() == data  # the entry was written again, whole


def test_unreachable_hub_name_fails_fast_offline(monkeypatch) -> None:
    """A hub name that is not cached: nothing reachable, so offline mode is set instead of ~25 s of retries."""
    from interp.model.loading import load_hf_model

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1")  # port 443 on localhost: refused at once
    t0 = time.time()
    with pytest.raises(Exception) as info:
        load_hf_model("someone/not-cached-model-xyz")
    assert time.time() - t0 < 10
    assert "not-cached-model-xyz" in str(info.value) and "--model" in str(info.value)
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_perspective_scoring_saves_each_text_as_it_is_scored(tmp_path, monkeypatch) -> None:
    """Per-item progress: with concurrency 1 every text is appended (and shown) as soon as it is scored."""
    from detox_train.evaluate import get_scorer, score_samples
    from fake_perspective import KEY, FakePerspective

    monkeypatch.setenv("PERSPECTIVE_API_KEY", KEY)
    samples = tmp_path / "s.jsonl"
    samples.write_text("".join(json.dumps({"prompt_id": f"p{i}", "lang": "en", "sample_index": 0, "text": f"t{i}",
                                           "n_tokens": 1}) + "\n" for i in range(5)))
    out = tmp_path / "o.jsonl"
    seen: list[int] = []
    with FakePerspective() as srv:
        scorer = get_scorer("perspective", qps=1000.0, base_url=srv.url, backoff=0.001)
        inner = scorer._score_one

        def spy(text, lang):
            seen.append(out.read_bytes().count(b"\n") if out.exists() else 0)
            return inner(text, lang)

        scorer._score_one = spy
        score_samples(samples, scorer, out, batch_size=64, progress=False)
    assert seen == [0, 1, 2, 3, 4]


def test_pipeline_kill9_then_resume_with_changed_config_refuses_or_restarts(smoke_run: Path, tmp_path) -> None:
    """kill -9 inside the generate stage, then resume with another temperature: the resume must not mix
    samples of two settings in one file (it refuses, naming the file, or restarts the stage)."""
    import shutil

    run_dir = tmp_path / "killed"
    for stage in ("model", "probe", "neurons", "dpo"):
        shutil.copytree(smoke_run / "stages" / stage, run_dir / "stages" / stage)
    base = [sys.executable, "-m", "interp.app.cli", "run", "--preset", "smoke", "--run-dir", str(run_dir),
            "--no-progress", "--set", "evaluation.batch_size=1"]
    proc = subprocess.Popen(base, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples = run_dir / "stages" / "generate" / "samples_before.jsonl"
    _wait_lines(samples, 2, proc, timeout=300)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (run_dir / "stages" / "generate" / "stage.json").exists(), "not killed inside the stage"
    killed = samples.read_bytes()
    rc, err = _main(base[3:] + ["--set", "evaluation.temperature=0.5", "--only", "generate"])
    assert "Traceback" not in err
    if rc == 2:  # refused: names the file, leaves it as it was
        assert "samples_before.jsonl" in err
        assert samples.read_bytes() == killed
    else:  # restarted: every row now comes from the new settings
        assert rc == 0, err
        manifest = json.loads(samples.with_name(samples.name + ".manifest.json").read_text())
        assert manifest["config"]["temperature"] == 0.5
        rows = [json.loads(line) for line in samples.read_text().splitlines()]
        assert len({(r["prompt_id"], r["sample_index"]) for r in rows}) == len(rows)
