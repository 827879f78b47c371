# Shared setup of kiln's benchmarks, sourced by bench/run.sh and bench/quant.sh
# (not run on its own). Both functions print progress to stderr and stop the
# calling script on failure (it runs with set -euo pipefail).
#
#   bench_venv BENCH        BENCH/.venv from BENCH/requirements.txt, made the
#                           first time and again whenever that file changes;
#                           sets $py to its python.
#   bench_build_kiln BENCH  kiln (Release, no tests) in BENCH/build/, rebuilt
#                           when its sources changed; sets $kiln to the binary.

bench_venv() {
  local bench=$1 venv=$1/.venv
  py=$venv/bin/python
  if [[ ! -x $py ]] || ! cmp -s "$bench/requirements.txt" "$venv/requirements.installed"; then
    echo "bench: creating $venv" >&2
    python3 -m venv "$venv"
    "$py" -m pip install --quiet --disable-pip-version-check -r "$bench/requirements.txt"
    cp "$bench/requirements.txt" "$venv/requirements.installed"
  fi
}

bench_build_kiln() {
  local bench=$1 root
  root=$(dirname "$bench")
  cmake -S "$root" -B "$bench/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_TESTS=OFF >/dev/null
  ninja --quiet -C "$bench/build" -j2 kiln
  kiln=$bench/build/kiln
}
