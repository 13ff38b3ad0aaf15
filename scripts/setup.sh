#!/bin/sh
# Installs vtpmd's build and test dependencies from Debian 12's packages and
# builds the tree into ./build. Idempotent: installs only what is missing,
# reconfigures only when needed. Run as root on Debian 12.
#   scripts/setup.sh [BUILD_DIR] [extra meson setup options...]
set -eu

cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
[ $# -gt 0 ] && shift

# clang + libclang-rt-14-dev (libFuzzer): the fuzz targets' build dir (docs/fuzzing.md).
# valgrind: scripts/valgrind.sh, and its memcheck.h for the libtpms adapter's annotation.
PACKAGES="meson ninja-build pkg-config g++ python3 python3-cryptography procps
libuv1-dev libtpms-dev libmbedtls-dev libssl-dev nlohmann-json3-dev doctest-dev
libtss2-dev libseccomp-dev libxen-dev
swtpm swtpm-tools tpm2-tools openssl clang libclang-rt-14-dev python3-prometheus-client valgrind"

missing=""
for p in $PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  meson setup "$BUILD_DIR" "$@"
elif [ $# -gt 0 ]; then
  meson configure "$BUILD_DIR" "$@"
fi
ninja -C "$BUILD_DIR"
