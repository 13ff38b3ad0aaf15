#!/bin/sh
# Sets everything up (scripts/setup.sh) and runs the whole test suite: doctest
# units and the integration tests that drive the real daemon with real
# clients. Idempotent. Ends with "N passed, M failed".
#   scripts/test.sh [BUILD_DIR] [extra meson setup options...]
set -eu

cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
[ $# -gt 0 ] && shift
sh scripts/setup.sh "$BUILD_DIR" "$@"
# The QEMU guest (kernel + busybox initramfs) for the end-to-end boot test.
sh tests/qemu/build-guest.sh >/dev/null

status=0
meson test -C "$BUILD_DIR" --print-errorlogs --num-processes 1 >"$BUILD_DIR/test-output.txt" 2>&1 || status=$?
cat "$BUILD_DIR/test-output.txt"
passed=$(sed -n 's/^Ok: *\([0-9]*\).*/\1/p' "$BUILD_DIR/test-output.txt" | tail -1)
failed=0
for kind in Fail "Unexpected Pass" Timeout Skipped; do
  n=$(sed -n "s/^$kind: *\([0-9]*\).*/\1/p" "$BUILD_DIR/test-output.txt" | tail -1)
  failed=$((failed + ${n:-0}))
done
echo "${passed:-0} passed, $failed failed"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
