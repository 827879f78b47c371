#!/bin/sh
# Runs an ARM64 program under qemu-user: the CMAKE_CROSSCOMPILING_EMULATOR of
# the cross build (cmake/aarch64-linux-gnu.cmake), so ctest runs each test as
#   cmake/qemu-aarch64-run.sh PROGRAM ARGS...
# Some tests start themselves again (posix_spawn of argv[0], to run under
# another KILN_ISA_MASK). The kernel runs an ARM64 file only where binfmt_misc
# has qemu registered, so the program is given this script as its argv[0] and
# its own path in KILN_QEMU_PROGRAM: starting argv[0] comes back here, which
# starts the program again under qemu with the arguments it was given.
# KILN_QEMU_SYSROOT: the ARM64 libraries (default /usr/aarch64-linux-gnu).
set -eu
if [ -z "${KILN_QEMU_PROGRAM:-}" ]; then
  KILN_QEMU_PROGRAM=$1
  shift
  export KILN_QEMU_PROGRAM
fi
exec qemu-aarch64 -L "${KILN_QEMU_SYSROOT:-/usr/aarch64-linux-gnu}" -0 "$0" "$KILN_QEMU_PROGRAM" "$@"
