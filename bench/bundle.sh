#!/usr/bin/env bash
# Load time of kiln's CPU bundles (kiln compile --target cpu) against the
# .tflite files they come from, and the activation memory co-compiled models
# share; writes bench/BUNDLE.md. See bench/README.md.
#
# Usage: bench/bundle.sh [--kiln PATH] [--runs R] [--threads N] [--iters I]
#
# Builds kiln (Release) into bench/build/ as bench/run.sh does, unless --kiln
# names a kiln binary. Needs the int8 models bench/run.sh makes in
# bench/models/ and the shared float SSD from $KILN_MODELS (default
# ../shared/models); bundles go to bench/models/bundle/ (git-ignored). Only
# python3's standard library is used.
set -euo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$bench")
models_dir=${KILN_MODELS:-$root/../shared/models}
float_ssd=$models_dir/ssd_mobilenet_v2_oidv4_fp16.tflite
# shellcheck source=bench/venv.sh
source "$bench/venv.sh"

kiln=""
args=()
while (($#)); do
  if [[ $1 == --kiln ]]; then
    kiln=${2:?--kiln needs a path}
    shift 2
  else
    args+=("$1")
    shift
  fi
done
if [[ ! -f $float_ssd ]]; then
  echo "bench: $float_ssd: missing (set KILN_MODELS to the shared models folder)" >&2
  exit 1
fi
[[ -n $kiln ]] || bench_build_kiln "$bench"
mkdir -p "$bench/models/bundle"
python3 "$bench/bundle.py" --kiln "$kiln" --models "$bench/models" --float-ssd "$float_ssd" \
  --work "$bench/models/bundle" --out "$bench/BUNDLE.md" "${args[@]}"
