#!/usr/bin/env bash
# Reproduce assets/models/zonkey-small from scratch on 2 CPU cores (about 4.5 hours).
#   stage 1: both levels from scratch, level 1 only for steps 1,500-1,800 (training/configs/small.json)
#   stage 2: level 0 frozen from stage 1, a fresh level 1 trained on 32 documents per step
#            (training/configs/small_level1.json)
#   stage 3: stage 2 continued (level 0 still frozen) with a new cosine schedule at half the peak lr,
#            bf16 autocast (training/configs/small_stage3.json)
# then evaluate the result. Each stage resumes exactly if it is interrupted: run this again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}

run_stage() {  # config out_dir
  if [ -f "$2/release/config.json" ]; then
    echo "== $1: already finished ($2/release)"
  elif [ -f "$2/state.pt" ]; then
    echo "== $1: resuming"
    "$PY" -m training.train --config "$1" --resume
  else
    echo "== $1"
    "$PY" -m training.train --config "$1"
  fi
}

run_stage training/configs/small.json runs/small
run_stage training/configs/small_level1.json runs/small_level1
run_stage training/configs/small_stage3.json runs/small_stage3
"$PY" -m training.evaluate --model runs/small_stage3/release
echo "release: runs/small_stage3/release (copy it to assets/models/zonkey-small to ship it)"
