#!/usr/bin/env bash
# The trainer's end-to-end figures (a benchmark, not a test): kiln train on
#   1. Fashion-MNIST from scratch (Debian's dataset-fashion-mnist),
#   2. SSD detection transfer learning on the "full" dataset of
#      scripts/make-detection-dataset (Debian tuxpaint stamp photos pasted on
#      real photographs, held-out scenes and objects in the test split),
#   3. classification transfer learning on crops of those objects,
# then writes bench/train/PIPELINE.md with accuracy / mAP for the float and
# int8 exports and the wall-clock times. Run it on a quiet machine.
# Usage: bench/train/pipeline.sh [--threads N]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=$(dirname "$here")
root=$(dirname "$bench")
threads=2
[[ "${1:-}" == "--threads" ]] && threads=$2
source "$bench/venv.sh"
bench_venv "$bench"
bench_build_kiln "$bench"
work="$bench/models/pipeline"
mkdir -p "$work"
export KILN_MODELS="${KILN_MODELS:-$(cd "$root/.." && pwd)/shared/models}"

"$root/scripts/fetch-photos" "$work/photos" >&2
if [[ ! -f "$work/det/annotations/instances_train.json" ]]; then
  rm -rf "$work/det"
  "$py" "$root/scripts/make-detection-dataset" full "$work/det" --seed 0 \
        --photos "$work/photos" --cache "$work/stamps" >&2
fi
"$py" "$here/crops.py" "$work/det" "$work/crops" >&2

run() { # name, then kiln train arguments
  local name=$1
  shift
  rm -rf "$work/out_$name"
  local t0=$(date +%s.%N)
  "$kiln" train "$@" --out "$work/out_$name" --threads "$threads" > "$work/$name.log" 2>&1
  local t1=$(date +%s.%N)
  echo "$name $(echo "$t1 - $t0" | bc)" >> "$work/times.txt"
}
: > "$work/times.txt"
run fmnist --task classify --data /usr/share/datasets/fashion-mnist --from-scratch
run detect --task detect --data "$work/det"
run crops_balanced --task classify --data "$work/crops"
run crops_accurate --task classify --data "$work/crops" --preset accurate
"$py" "$here/pipeline_report.py" "$work" "$kiln" "$threads" > "$here/PIPELINE.md"
echo "pipeline: wrote $here/PIPELINE.md" >&2
