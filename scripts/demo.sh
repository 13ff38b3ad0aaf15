#!/bin/sh
# Sets everything up and runs vtpmd's main job on the embedded default (no
# hardware TPM): the daemon with its default paths (/var/lib/vtpmd,
# /run/vtpmd/control.sock), a TPM 2.0 and a TPM 1.2 vTPM, real TPM commands
# against both, then a clean shutdown that saves every instance. Idempotent:
# a second run restores the same two vTPMs and their PCRs carry on from the
# first run.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh build >/dev/null

STATE_DIR=${VTPMD_STATE_DIR:-/var/lib/vtpmd}
SOCKET=${VTPMD_SOCKET:-/run/vtpmd/control.sock}
VTPM20=6a1f3c2e-0b7d-4e52-9a61-2f0c8d4e7b10
VTPM12=0d9e8f7a-6b5c-4d3e-8f21-a0b1c2d3e4f5
ctl() { build/tools/vtpmctl/vtpmctl --socket "$SOCKET" "$@"; }

if ctl hello >/dev/null 2>&1; then
  echo "demo: a vtpmd is already serving $SOCKET; using it (it keeps running afterwards)"
  DAEMON_PID=""
else
  build/src/vtpmd --state-dir "$STATE_DIR" --control-socket "$SOCKET" &
  DAEMON_PID=$!
  trap '[ -n "$DAEMON_PID" ] && kill "$DAEMON_PID" 2>/dev/null' EXIT
  for _ in $(seq 100); do ctl hello >/dev/null 2>&1 && break; sleep 0.1; done
fi

step() { printf '\n== %s\n' "$*"; }
step "vTPM instances (created on the first run, restored afterwards)"
ctl show "$VTPM20" >/dev/null 2>&1 || ctl add --uuid "$VTPM20" --tpm 2.0 --auto-startup >/dev/null
ctl show "$VTPM12" >/dev/null 2>&1 || ctl add --uuid "$VTPM12" --tpm 1.2 >/dev/null
ctl list

step "TPM 2.0 $VTPM20: GetRandom(16), then extend PCR 16 and read it back"
ctl exec "$VTPM20" 80010000000c0000017b0010
ctl exec "$VTPM20" 80020000004100000182000000100000000940000009000000000000000001000b \
  c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00 >/dev/null
echo "PCR 16 (sha256) is now: $(ctl exec "$VTPM20" 8001 00000014 0000017e 00000001 000b 03 000001 | tail -c 65)"

step "TPM 1.2 $VTPM12: Startup(CLEAR) (already started on later runs), Extend PCR 10, GetRandom(8)"
ctl exec "$VTPM12" 00c10000000c0000009900 01 || true
echo "PCR 10 (sha1) is now: $(ctl exec "$VTPM12" 00c10000002200000014 0000000a 0102030405060708090a0b0c0d0e0f1011121314 | tail -c 41)"
ctl exec "$VTPM12" 00c10000000e00000046 00000008

step "daemon status"
ctl status

if [ -n "$DAEMON_PID" ]; then
  step "clean shutdown (SIGTERM): every instance is saved with its volatile state"
  kill -TERM "$DAEMON_PID"
  wait "$DAEMON_PID"
  DAEMON_PID=""
  echo "vtpmd exited 0; state in $STATE_DIR:"
  ls -l "$STATE_DIR"
  echo "Run this script again: the PCR values above carry on from where they are now."
fi
