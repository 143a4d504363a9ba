#!/usr/bin/env bash
# Train the `base` preset on one GPU for a fixed wall-clock budget, evaluate it quickly, and write
# the release and its logs to $OUT (at most 8 files, each under 16 MB: bf16 weights in 3 shards).
#
#   OUT=<folder> bash training/gpu_run.sh
#
# Environment (all optional):
#   MINUTES=6.5      total training budget, split 60/40 between the stages below (with start-up,
#                    FLOP counting (60 s at most) and the quick evaluation (EVAL_SECONDS, 75) the
#                    script ends inside 10 minutes)
#   INIT_FROM=<dir>  a previous `base` release (e.g. assets/models/zonkey-base): both stages start
#                    from its weights, so several runs add training time
#   LEVEL0_SHARE=0.6 the share of MINUTES that stage 1 (level 0) gets; 0 skips stage 1 and gives the
#                    whole budget to level 1 on INIT_FROM's frozen level 0 (needs INIT_FROM)
#   DEVICE=cuda      "cpu" runs the same recipe on the CPU (to test the script)
#   EXTRA="..."      more --key=value overrides for both stages (e.g. "--batch_size=4 --threads=2")
#   LEVEL0_EXTRA="..." overrides for stage 1 alone, after EXTRA: for example, with INIT_FROM,
#                    "--soften_bos=0.1" to let the saturated level-0 BOS head move again (as
#                    zonkey-small's stage 14; training/staging.py)
#   LEVEL1_EXTRA="..." overrides for stage 2 alone, after EXTRA (e.g. "--batch_size=256" or a whole
#                    --model_overrides={...} JSON without spaces, which replaces base_level1.json's)
#   EVAL="..."       arguments of the quick evaluation (default "--paragraphs 8 --sentences 8 --generate 4 --steps 10")
#   EVAL_SECONDS=75  time limit of the quick evaluation
#   PYTHON=python3
# Stage 1 (training/configs/base.json): level 0 alone. Stage 2 (training/configs/base_level1.json):
# level 0 frozen, level 1 trained on its inference segmentation (as zonkey-small's stages 1 and 2).
# Both use bf16 autocast and a wall-clock cosine schedule (`time_schedule`).
# Packages the GPU machine lacks can be carried as wheels in .whl/ (installed into /tmp/site).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder that receives the release}"
MINUTES=${MINUTES:-6.5}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
read -r -a EXTRA_ARGS <<<"${EXTRA:-}"
read -r -a LEVEL0_ARGS <<<"${LEVEL0_EXTRA:-}"
read -r -a LEVEL1_ARGS <<<"${LEVEL1_EXTRA:-}"
mkdir -p "$OUT"
LOG="$OUT/gpu_run.txt"
exec > >(tee -a "$LOG") 2>&1
export PYTHONUNBUFFERED=1

if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
"$PY" - <<'PYCHECK'
import torch, safetensors, tqdm  # noqa: F401
from training.data import local_json_path
print("torch", torch.__version__, "| cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-", "| corpus", local_json_path())
PYCHECK

SHARE=${LEVEL0_SHARE:-0.6}
BUDGET=$("$PY" -c "
s = float('$SHARE')
assert 0 <= s < 1, 'LEVEL0_SHARE=$SHARE must be in [0, 1)'
print(round($MINUTES * s, 3), round($MINUTES * (1 - s), 3), int(s == 0))")  # fails the script on a bad value
read -r M1 M2 SKIP1 <<<"$BUDGET"
if [ "$SKIP1" = 1 ] && [ -z "${INIT_FROM:-}" ]; then
  echo "LEVEL0_SHARE=0 trains level 1 alone on a trained level 0: set INIT_FROM to a base release" >&2
  exit 2
fi
S1=(--config training/configs/base.json --device="$DEVICE" --max_minutes="$M1")
S2=(--config training/configs/base_level1.json --device="$DEVICE" --max_minutes="$M2")
if [ -n "${INIT_FROM:-}" ]; then
  S1+=(--init_from="$INIT_FROM" --warmup_steps=50)
  S2+=(--init_levels=0 --warmup_steps=50)  # level 1 too: stage 1's release (or INIT_FROM) carries a level 1
  if [ "$SKIP1" = 1 ]; then S2+=(--init_from="$INIT_FROM"); fi
fi
rm -rf runs/base runs/base_level1
# the release is copied to $OUT as soon as a stage has exported it, so a later failure (or the
# device's command limit) never loses finished training; later steps only add to it
K=0
if [ -n "${INIT_FROM:-}" ]; then
  K=$(find "$INIT_FROM" -maxdepth 1 -name 'train_log*.jsonl' | wc -l)
  echo "INIT_FROM had $K stage logs: rename its train_log.jsonl to train_log_stage${K}.jsonl when shipping"
fi
ship() {  # ship <release dir>: its config, weights and own log replace what $OUT holds
  rm -f "$OUT"/model*.safetensors*
  cp "$1"/config.json "$1"/model*.safetensors* "$OUT"/
  cp "$1"/train_log.jsonl "$OUT"/train_log.jsonl
  echo "== shipped $1 to \$OUT"
}
t0=$(date +%s)
if [ "$SKIP1" = 1 ]; then
  echo "== stage 1 skipped (LEVEL0_SHARE=0): level 0 stays INIT_FROM's"
else
  echo "== stage 1: level 0, ${M1} min"
  "$PY" -m training.train "${S1[@]}" "${EXTRA_ARGS[@]}" "${LEVEL0_ARGS[@]}"
  ship runs/base/release
fi
echo "== stage 2: level 1 on the frozen level 0, ${M2} min"
REL=runs/base_level1/release
if "$PY" -m training.train "${S2[@]}" "${EXTRA_ARGS[@]}" "${LEVEL1_ARGS[@]}"; then
  ship "$REL"
  # stage 1's log, numbered after INIT_FROM's stages (shipping: `cp $OUT/* assets/models/zonkey-base/`
  # after renaming that folder's train_log.jsonl to the free stage number)
  if [ "$SKIP1" = 0 ]; then cp runs/base/train_log.jsonl "$OUT/train_log_stage$((K + 1)).jsonl"; fi
elif [ "$SKIP1" = 1 ]; then
  echo "== stage 2 FAILED: nothing was trained to completion" >&2
  exit 1
else
  echo "== stage 2 FAILED: \$OUT holds stage 1's release (level 1 untrained)"
  REL=runs/base/release
fi
echo "== training wall-clock: $(( $(date +%s) - t0 )) s"

# measurements only: each is bounded in time and may fail without losing the release above
echo "== throughput and model FLOPs utilisation"
# (stage 2 counts with LEVEL1_EXTRA: its batch and loss settings; LEVEL0_EXTRA's init-only options
# such as soften_bos would be refused without init_from, and a batch size leaves FLOPs per character as they are)
for stage in base:runs/base base_level1:runs/base_level1; do
  [ -f "${stage#*:}/train_log.jsonl" ] || continue
  more=()
  if [ "${stage%%:*}" = base_level1 ]; then more=("${LEVEL1_ARGS[@]}"); fi
  timeout 60 "$PY" -m training.flops --config "training/configs/${stage%%:*}.json" --device="$DEVICE" \
    "${EXTRA_ARGS[@]}" "${more[@]}" --log "${stage#*:}/train_log.jsonl" || echo "flops for ${stage%%:*} failed (rc $?)"
done
echo "== quick held-out evaluation (printed only: the shipped metrics.json is measured on the CPU)"
read -r -a EVAL_ARGS <<<"${EVAL:---paragraphs 8 --sentences 8 --generate 4 --steps 10}"
timeout "${EVAL_SECONDS:-75}" "$PY" -m training.evaluate --model "$REL" "${EVAL_ARGS[@]}" \
  --out "${TMPDIR:-/tmp}/zonkey_base_metrics_quick.json" || echo "quick evaluation failed or timed out (rc $?)"
ls -l "$OUT"
