#!/usr/bin/env bash
# The GPU fast path on a real card, in one command (issue: GPU figures). Run from the repository
# root on a machine with CUDA; needs torch with CUDA and pytest, none of the UI packages:
#
#     OUT=/tmp/gpu scripts/gpu_check.sh
#
# Writes into $OUT (default ./gpu_out): log.txt (everything printed), pytest.txt, bench_step.json,
# bench_loader.json and bench_loader_packed.json, and train_{bf16,compile,packed}.json (each short
# L4 run's history.json and status.json; 3 epochs, so the later ones show the steady state).
# Sizes can be lowered for a dry run on a CPU machine:
#     GPU_CHECK_DEVICE=cpu GPU_CHECK_HIDDEN=64 GPU_CHECK_SAMPLES=128 scripts/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
HIDDEN=${GPU_CHECK_HIDDEN:-4096}
SAMPLES=${GPU_CHECK_SAMPLES:-2048}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
exec > >(tee "$OUT/log.txt") 2>&1

section() { printf '\n=== %s (%s)\n' "$1" "$(date +%H:%M:%S)"; }

section "machine"
nvidia-smi || echo "nvidia-smi: not available"
"$PY" - <<'PY'
import torch
print("torch", torch.__version__, "cuda available:", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY

section "pytest -m cuda"
timeout 240 "$PY" -m pytest -m cuda -q -p no:cacheprovider tests 2>&1 | tee "$OUT/pytest.txt"

section "bench step at H=$HIDDEN"
timeout 240 "$PY" -m engine bench step --device "$DEVICE" --levels L1,L4,L5,L5F --hidden_dim "$HIDDEN" \
    --samples "$((SAMPLES / 2))" --val_samples "$((SAMPLES / 8))" --max_seq 48 --batch_size 64 --repeats 3 \
    --json > "$OUT/bench_step.json"
cat "$OUT/bench_step.json"

section "synthetic set at H=$HIDDEN"
timeout 240 "$PY" -m engine synth "$WORK/data" --hidden_dim "$HIDDEN" --samples "$SAMPLES" \
    --val_samples "$((SAMPLES / 4))" --max_seq 48 --chunk_size 512

summarize() {  # NAME: the run's history and status into $OUT/train_NAME.json, one line per epoch
    "$PY" - "$WORK/runs_$1" "$OUT/train_$1.json" <<'PY'
import json, pathlib, sys
run = next(pathlib.Path(sys.argv[1]).glob("*/*/history.json")).parent
read = lambda name: json.loads((run / name).read_text())
json.dump({"history": read("history.json"), "status": read("status.json"),
           "precision": read("config.json")["precision"]}, open(sys.argv[2], "w"), indent=2)
history = read("history.json")
for i, epoch in enumerate(history["epoch"]):
    print(f"epoch {epoch}: {history['epoch_time_s'][i]:.2f} s, {history['train_tokens_per_s'][i]:,.0f} tok/s, "
          f"data wait {100 * history['data_wait_frac'][i]:.1f} %, val loss {history['val_loss'][i]:.4f}")
PY
}

train() {  # NAME TRAIN_DATA FLAGS...: a short L4 training, summarised into $OUT/train_NAME.json
    local name=$1 data=$2; shift 2
    section "train L4 $name"
    timeout 240 "$PY" -m engine train --train_data "$data" --val_data "$WORK/data/val" --level L4 \
        --num_epochs 3 --device "$DEVICE" --no_eval --output_dir "$WORK/runs_$name" "$@"
    summarize "$name"
}
train bf16 "$WORK/data/train" --precision bf16

section "L4 training step alone (no data loading): time per step and where it goes"
timeout 120 "$PY" - "$DEVICE" "$HIDDEN" <<'PY'
import sys, time, torch
from adapters.losses import batch_objective
from adapters.registry import build_adapter, load_registry
from engine.device import autocast, make_optimizer
device, hidden = torch.device(sys.argv[1]), int(sys.argv[2])
torch.manual_seed(0)
model = build_adapter(load_registry().level("L4"), hidden).to(device).train()
optimizer = make_optimizer(model.parameters(), 1e-3, device)
lens = torch.randint(4, 49, (64,))
mask = (torch.arange(48)[None, :] < lens[:, None]).to(device)
tokens = int(lens.sum())
egpt, vl = torch.randn(tokens, hidden, device=device), torch.randn(tokens, hidden, device=device)
def step(sync):
    with autocast("bf16", device):
        loss = batch_objective(model, True, egpt, vl, mask).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    if sync:
        loss.item()
sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
for _ in range(5):
    step(True)
for per_step_sync in (True, False):
    sync(); started = time.perf_counter()
    for _ in range(20):
        step(per_step_sync)
    sync(); elapsed = (time.perf_counter() - started) / 20
    params = sum(p.numel() for p in model.parameters())
    print(f"step with{'' if per_step_sync else 'out'} a sync per step: {1e3 * elapsed:.1f} ms, {tokens / elapsed:,.0f} tok/s, "
          f"{6 * params * tokens / elapsed / 1e12:.1f} TFLOP/s (6 x params x tokens)")
from torch.profiler import ProfilerActivity, profile
activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
with profile(activities=activities) as prof:
    for _ in range(5):
        step(True)
sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
print(prof.key_averages().table(sort_by=sort, row_limit=15, max_name_column_width=40))
PY

section "bench loader"
timeout 120 "$PY" -m engine bench loader "$WORK/data/train" --repeats 3 --json > "$OUT/bench_loader.json"
cat "$OUT/bench_loader.json"

train compile "$WORK/data/train" --precision bf16 --compile

section "a packed bf16 copy of the training set: loader and training"
timeout 120 "$PY" -m engine data pack "$WORK/data/train" "$WORK/packed" --dtype bf16
timeout 120 "$PY" -m engine bench loader "$WORK/packed" --repeats 3 --json > "$OUT/bench_loader_packed.json"
cat "$OUT/bench_loader_packed.json"
train packed "$WORK/packed" --precision bf16

section "done"
