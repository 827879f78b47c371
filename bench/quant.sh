#!/usr/bin/env bash
# kiln's quantizer against TensorFlow's on a trained Fashion-MNIST CNN, and the
# time kiln takes to quantize the shared SSD; writes bench/QUANT.md (which
# bench/RESULTS.md links to). See bench/README.md.
#
# Usage: bench/quant.sh [--epochs E] [--check N] [--runs R]
#
# Uses bench/.venv and bench/build/kiln as bench/run.sh does (bench/venv.sh).
# Installs Debian's dataset-fashion-mnist when missing (apt-get, through sudo
# when not root) and fetches OpenCV's vtest.avi with scripts/fetch-photos into
# $KILN_PHOTOS (default $TMPDIR/kiln-photos, as the tests). Scratch models,
# samples and frames go to bench/models/quant/ (git-ignored); the trained
# float model there is reused while its training settings are unchanged.
set -euo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$bench")
models_dir=${KILN_MODELS:-$root/../shared/models}
float_ssd=$models_dir/ssd_mobilenet_v2_oidv4_fp16.tflite
photos=${KILN_PHOTOS:-${TMPDIR:-/tmp}/kiln-photos}
# shellcheck source=bench/venv.sh
source "$bench/venv.sh"

if [[ ! -f $float_ssd ]]; then
  echo "bench: $float_ssd: missing (set KILN_MODELS to the shared models folder)" >&2
  exit 1
fi

bench_venv "$bench"
bench_build_kiln "$bench"
mkdir -p "$bench/models/quant"
"$py" "$bench/quant_anchor.py" --kiln "$kiln" --work "$bench/models/quant" --ssd "$float_ssd" \
  --photos "$photos" --out "$bench/QUANT.md" --results "$bench/RESULTS.md" "$@"
