# Cross-compiling kiln for ARM64 Linux with Debian's gcc-aarch64-linux-gnu and
# libc6-dev-arm64-cross. Only the core layers need no arm64 libraries, so use
# it with -DKILN_CORE_ONLY=ON; the tests run under qemu-user with
# cmake/qemu-aarch64-run.sh as the emulator (what scripts/test does):
#   cmake -S . -B build-arm64 -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
#         -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DKILN_CORE_ONLY=ON \
#         -DCMAKE_CROSSCOMPILING_EMULATOR=$PWD/cmake/qemu-aarch64-run.sh
# (Release's -O3 meets a gcc 12 aarch64 vectorizer crash in one test.)
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)

set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
