#!/usr/bin/env bash
# Shows that `xdetox dpo train`'s entry point runs unchanged under `accelerate launch`:
# two CPU processes (DDP over gloo) train a tiny GPT-2 for a few DPO steps, then the script checks
# the manifest (world_size 2) and that the 2-process run reached the same step count as 1 process.
#
# Why `--multi_gpu ... --device cpu` and not `--cpu --num_processes 2`: in accelerate 1.15,
# `--cpu` takes the simple launcher, which starts ONE process unless an MPI hostfile is given
# (`--mpirun_hostfile`); `--multi_gpu` starts N processes through torchrun, and with the model on
# CPU the process group uses gloo. On GPUs drop `--device cpu`.
# Too slow for the test suite (two interpreters + process group); run by hand:
#   bash benchmarks/accelerate_dpo.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
ACCEL=${ACCEL:-.venv/bin/accelerate}
WORK=${1:-$(mktemp -d /tmp/xdetox-accel-dpo.XXXXXX)}
mkdir -p "$WORK"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1

"$PY" - "$WORK" <<'PYEOF'
import sys
from pathlib import Path
sys.path.insert(0, "tests")
from tiny_models import save_tiny
from detox_train.pairs import write_pairs_jsonl
from interp.data.records import PreferencePair
work = Path(sys.argv[1])
save_tiny("gpt2", work / "model")
prompts = ["I want to", "this is a", "Je veux", "the quick brown"]
pairs = [PreferencePair(id=f"p{i}", prompt=prompts[i % 4], chosen=" go home now", rejected=" stupid idiot",
                        source="toy") for i in range(48)]
write_pairs_jsonl(work / "pairs.jsonl", pairs)
PYEOF

COMMON=(train --preset paper-full --model "$WORK/model" --pairs "$WORK/pairs.jsonl" --max-steps 6
        --eval-steps 3 --learning-rate 1e-3 --optim adamw_torch --set warmup_steps=0
        --set max_length=32 --set max_prompt_length=8 --set heldout_source=gettext --set heldout_texts=4
        --set eval_fraction=0.1 --set early_stopping_patience=null --per-device-train-batch-size 2)

t0=$(date +%s)
"$ACCEL" launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \
  -m interp.app.cli_dpo "${COMMON[@]}" --device cpu --output-dir "$WORK/run-2proc"
t1=$(date +%s)
"$PY" -m interp.app.cli_dpo "${COMMON[@]}" --device cpu --output-dir "$WORK/run-1proc"
t2=$(date +%s)

"$PY" - "$WORK" "$((t1 - t0))" "$((t2 - t1))" <<'PYEOF'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
m2 = json.loads((work / "run-2proc/manifest.json").read_text())
m1 = json.loads((work / "run-1proc/manifest.json").read_text())
log2 = json.loads((work / "run-2proc/training_log.json").read_text())["evals"]
assert m2["world_size"] == 2 and m1["world_size"] == 1, (m2["world_size"], m1["world_size"])
assert m2["global_step"] == m1["global_step"] == 6
assert (work / "run-2proc/model.safetensors").is_file()
margins = [e["eval_rewards/margins"] for e in log2 if "eval_rewards/margins" in e]
print(f"2 processes: world_size={m2['world_size']} steps={m2['global_step']} wall={sys.argv[2]}s "
      f"(pairs/step = 2 x batch 2), eval margins {['%.3f' % m for m in margins]}")
print(f"1 process : world_size={m1['world_size']} steps={m1['global_step']} wall={sys.argv[3]}s")
print("OK: the same entry point ran under accelerate launch")
PYEOF
