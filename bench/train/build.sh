#!/usr/bin/env bash
# Builds kiln (Release, bench/train/build/) and the Fashion-MNIST driver
# bench/train/build/fmnist against it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build="$here/build"
cmake -S "$root" -B "$build/kiln" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_TESTS=OFF >/dev/null
ninja -C "$build/kiln" kiln_core >/dev/null
libs=$(pkg-config --libs libjpeg libpng zlib jansson libavformat libavcodec libavdevice libswscale \
       libavutil expat libarchive yaml-0.1 libsodium openblas)
cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -I"$root/include" "$here/fmnist.c" \
   "$build/kiln/libkiln_core.a" $libs -lm -pthread -o "$build/fmnist"
echo "$build/fmnist"
