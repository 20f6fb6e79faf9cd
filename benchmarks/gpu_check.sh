#!/usr/bin/env bash
# The GPU half of issue 20 in one run (fits a 10-minute device slot on one H200-class GPU):
#   1. env            GPU name/count, torch/CUDA/bitsandbytes/vLLM versions
#   2. qlora          paper-qlora DPO on a Llama-3-8B-shaped model: NF4 + double quant + bf16 compute checked
#                     on every 4-bit layer, step time, peak GPU memory
#   3. full           paper-full DPO on an mGPT-shaped model: step time, peak GPU memory
#   4. vllm           vLLM vs HF generate (same sampling): tokens/s ratio + a KS test that both sample
#                     HF's temperature/top-p distribution (skipped cleanly without vLLM)
#   5. analyses       activation collection and feature extraction vs bare HF (bench_scale.py)
#   6. bf16filter     bf16 vs fp32 activation filter: top-100 candidates whose kept decision changes
#   7. accelerate     DPO under `accelerate launch` across the GPUs, only if there are several
# Each check writes OUT/<check>.json (plus .log); a failing check is recorded and the rest still run.
# On CPU (`--device cpu`) every shape is `tiny`, so the whole script is testable without a GPU.
#   bash benchmarks/gpu_check.sh [--device cuda|cpu] [--out DIR]      (default OUT: $OUT or ./gpu-check-out)
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=cuda
OUTDIR=${OUT:-$PWD/gpu-check-out}
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=$2; shift 2 ;;
    --out) OUTDIR=$2; shift 2 ;;
    *) echo "usage: $0 [--device cuda|cpu] [--out DIR]" >&2; exit 2 ;;
  esac
done
if [ -z "${PY:-}" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=$(command -v python3 || command -v python); fi
fi
mkdir -p "$OUTDIR"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
WORK=$(mktemp -d "${TMPDIR:-/tmp}/xdetox-gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
if [ "$DEVICE" = cpu ]; then SMALL=tiny; BIG=tiny; LEN=64; STEPS=3; DRAWS=300; PROMPTS=8; ROUNDS=1; BUDGET=${BUDGET:-1800}
else SMALL=mgpt; BIG=llama3-8b; LEN=256; STEPS=4; DRAWS=2000; PROMPTS=32; ROUNDS=3; fi
C=(--device "$DEVICE" --out "$OUTDIR")
SUMMARY="$OUTDIR/summary.txt"; : > "$SUMMARY"

BUDGET=${BUDGET:-560}  # seconds for the whole script: a device command is killed at 600 s
check() {  # check NAME TIMEOUT_S CMD...: run, log, record status (never abort the script)
  local name=$1 limit=$2; shift 2
  [ "$DEVICE" = cpu ] && limit=$((limit * 3))  # the shared CPU test machine is slow
  local left=$((BUDGET - SECONDS))
  if [ "$left" -lt 30 ]; then echo "$name skipped: time budget spent" | tee -a "$SUMMARY"; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUTDIR/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc $((SECONDS - t0))s" | tee -a "$SUMMARY"
  [ $rc -eq 0 ] || tail -5 "$OUTDIR/$name.log"
}

check env 60 "$PY" - "$OUTDIR" <<'EOF'
import json, sys, importlib.util, torch
info = {"torch": torch.__version__, "cuda": torch.version.cuda, "gpus": torch.cuda.device_count(),
        "gpu_names": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
for m in ("transformers", "trl", "peft", "bitsandbytes", "vllm", "accelerate", "transformer_lens"):
    info[m] = None
    if importlib.util.find_spec(m):
        try:
            from importlib.metadata import version
            info[m] = version(m.replace("_", "-"))
        except Exception:
            info[m] = "present"
json.dump(info, open(f"{sys.argv[1]}/env.json", "w"), indent=1); print(info)
EOF
NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)

check save_big 240 "$PY" benchmarks/gpu_checks.py save --shape "$BIG" --dir "$WORK/big" --name save_big "${C[@]}"
check qlora 240 "$PY" benchmarks/gpu_checks.py qlora --dir "$WORK/big" --steps "$STEPS" --max-length "$LEN" "${C[@]}"
rm -rf "$WORK/big"
check save_small 120 "$PY" benchmarks/gpu_checks.py save --shape "$SMALL" --dir "$WORK/small" --name save_small "${C[@]}"
check full 180 "$PY" benchmarks/gpu_checks.py dpo --preset paper-full --dir "$WORK/small" --name full \
  --steps "$STEPS" --max-length "$LEN" "${C[@]}"
check analyses 200 "$PY" benchmarks/bench_scale.py --shape "$SMALL" --device "$DEVICE" --stages collect,features,rank \
  --rounds "$ROUNDS" --no-save --machine "${XDETOX_MACHINE:-$(hostname)}" --out "$OUTDIR/analyses.json"
check bf16filter 120 "$PY" benchmarks/gpu_checks.py bf16filter --shape "$SMALL" --prompts "$PROMPTS" --batch-size 16 "${C[@]}"
check vllm 180 "$PY" benchmarks/gpu_checks.py vllm --dir "$WORK/small" --draws "$DRAWS" --prompts "$PROMPTS" "${C[@]}"

if [ "${NGPU:-0}" -gt 1 ] && [ "$DEVICE" != cpu ]; then
  "$PY" - "$WORK/pairs.jsonl" <<'EOF'
import sys
from detox_train.pairs import write_pairs_jsonl
from interp.data.records import PreferencePair
p = ["I want to", "this is a", "Je veux", "the quick brown"]
write_pairs_jsonl(sys.argv[1], [PreferencePair(id=f"p{i}", prompt=p[i % 4], chosen=" go home now",
                  rejected=" stupid idiot", source="gpu-check") for i in range(256)])
EOF
  ACCEL=${ACCEL:-$(dirname "$PY")/accelerate}; [ -x "$ACCEL" ] || ACCEL=accelerate
  check accelerate 240 "$ACCEL" launch --multi_gpu --num_processes "$NGPU" --num_machines 1 --mixed_precision bf16 \
    -m interp.app.cli_dpo train --preset paper-full --model "$WORK/small" --pairs "$WORK/pairs.jsonl" --max-steps 8 \
    --set warmup_steps=0 --set max_length="$LEN" --set eval_fraction=0.05 --set eval_steps=4 \
    --set heldout_source=gettext --set heldout_texts=4 --set early_stopping_patience=null --output-dir "$WORK/accel"
  [ -f "$WORK/accel/manifest.json" ] && cp "$WORK/accel/manifest.json" "$OUTDIR/accelerate_manifest.json"
else
  echo "accelerate skipped (gpus=$NGPU, device=$DEVICE)" | tee -a "$SUMMARY"
  echo "{\"skipped\": \"needs >1 GPU (found ${NGPU:-0}, device $DEVICE)\"}" > "$OUTDIR/accelerate.json"
fi
echo "figures under $OUTDIR"; cat "$SUMMARY"
