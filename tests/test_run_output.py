"""`xdetox run` output: stdout holds one line per stage and the final block (verdicts, paths); progress
bars (with their work unit) and library chatter go to stderr."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from interp.app.pipeline import STAGES


def test_run_stdout_is_stage_lines_then_the_final_block(smoke_run: Path, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    for stage in STAGES[STAGES.index("dpo"):]:  # the stages from DPO on run afresh, the earlier ones are cached
        shutil.rmtree(run / "stages" / stage)
    res = subprocess.run([sys.executable, "-m", "interp.app.cli", "run", "--preset", "smoke", "--run-dir", str(run)],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    stage_lines = lines[:len(STAGES)]
    assert [re.match(r"^\[(\w+)\] ", x).group(1) for x in stage_lines] == list(STAGES), lines
    cached = [x for x in stage_lines if " cached: " in x]
    assert [re.match(r"^\[(\w+)\]", x).group(1) for x in cached] == list(STAGES[:STAGES.index("dpo")])
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    verdicts = summary["verdicts"]
    block = lines[len(STAGES):]
    assert block[:2] == ["", "verdicts (the paper's claims on this run):"]
    for i, v in enumerate(verdicts):
        head = block[2 + 3 * i]
        assert head.split()[0] == v["claim"] and v["verdict"] in head and v["statement"] in head
        assert block[3 + 3 * i].strip() == f"this run: {v['this_run']}"
        assert block[4 + 3 * i].strip() == f"decided by: {v['test']}"
    tail = block[2 + 3 * len(verdicts):]
    assert [x.split(":")[0] for x in tail] == ["report", "summary", "figures"], tail
    assert tail[0].split()[-1] == str((run / "report.html").resolve())
    # The bars are on stderr, each naming its work unit; the trainer's metric dicts are nowhere on stdout.
    assert "{'eval_loss'" not in res.stdout and "'train_runtime'" not in res.stdout
    assert re.search(r"generate: .*(prompt/s|s/prompt)", res.stderr) and re.search(r"score \S+: .*(text/s|s/text)", res.stderr)
    assert re.search(r"key activations \(model x language\): .*(language/s|s/language)", res.stderr)
    for noise in ("Loading weights", "Writing model shards", "Tokenizing train dataset"):  # library bookkeeping
        assert noise not in res.stderr, noise
    assert re.search(r"\| \d+/\d+ \[.*(it/s|s/it)", res.stderr)  # the DPO trainer's step bar stays
