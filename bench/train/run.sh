#!/usr/bin/env bash
# The training engine's Fashion-MNIST result and PyTorch speed anchor:
# builds kiln and bench/train/fmnist, creates bench/train/.venv with the
# pinned PyTorch (requirements.txt) the first time, measures training
# images/s of kiln and PyTorch on the same net, batch and thread count,
# trains to the accuracy target at each thread count, and writes
# bench/train/RESULTS.md. Run on a quiet machine (the load average is
# recorded).
#
#   bench/train/run.sh [--threads 1,2] [--steps 400] [--epochs 15] [--batch 64]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
threads=1,2 steps=400 epochs=15 batch=64
while [[ $# -gt 0 ]]; do
  case $1 in
    --threads) threads=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --epochs) epochs=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
venv="$here/.venv"
if [[ ! -x $venv/bin/python ]] || ! cmp -s "$here/requirements.txt" "$venv/requirements.txt"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$venv/requirements.txt"
fi
fmnist=$("$here/build.sh")
out="$here/build/results"
mkdir -p "$out"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for t in ${threads//,/ }; do
  "$fmnist" --steps "$steps" --threads "$t" --batch "$batch" > "$out/kiln_speed_$t.json"
  "$venv/bin/python" "$here/torch_anchor.py" --steps "$steps" --threads "$t" --batch "$batch" \
    > "$out/torch_speed_$t.json"
done
for t in ${threads//,/ }; do
  "$fmnist" --epochs "$epochs" --threads "$t" --batch "$batch" --export "$out" > "$out/kiln_fit_$t.txt"
done
/tmp/venv/bin/python "$here/check_export.py" "$out" > "$out/litert_check.txt" 2>&1 || true
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
python3 "$here/report.py" "$out" "$threads" "$load_before" "$load_after" "$(nproc)" \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" > "$here/RESULTS.md"
cat "$here/RESULTS.md"
