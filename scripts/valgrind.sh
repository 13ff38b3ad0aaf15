#!/bin/sh
# The integration suite with vtpmd and its engine workers under valgrind
# memcheck: every error or definite leak fails the run. Slow (~10-50x);
# not part of CI's time budget. Usage: sh scripts/valgrind.sh [TEST...]
# A TEST is an integration test's name (tests/integration/NAME.py) or a
# path below tests/ without .py (channel/test_tpm2_tools, qemu/test_qemu_vtpmd).
# VALGRIND_EXTRA adds memcheck options (e.g. --track-origins=yes).
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh build >/dev/null
command -v valgrind >/dev/null || { apt-get install -y valgrind >/dev/null; }
logs=$(mktemp -d /tmp/vtpmd-valgrind.XXXXXX)
chmod 1777 "$logs"  # test_privileges: the daemon and its workers write logs as nobody
# Definite leaks only: engine workers are killed (SIGKILL/PDEATHSIG) with
# their engine thread running, so its stack shows up as "possibly lost".
export VTPMD_WRAPPER="valgrind --quiet --trace-children=yes --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite --error-exitcode=99 --log-file=$logs/%p.log ${VALGRIND_EXTRA:-}"
export CHANNEL_TARGET=vtpmd  # the channel tests drive vtpmd, not swtpm
export VTPMD_TIMEOUT_SCALE=20
export VTPMD_BUILD_DIR="$PWD/build"
# By default the functional tests; their wall-clock bounds stretch with
# VTPMD_TIMEOUT_SCALE. Left out, but can be named here: test_crash_durability
# (hundreds of kills and restarts: hours under valgrind), test_noisy_neighbour
# and test_tpm12_scale (they measure speed), test_hardening (valgrind cannot
# run seccomp filters, so vtpmd runs without one there, and it writes its own
# vgcore files instead of cores).
tests=${*:-test_control_socket test_state_store test_lifecycle test_control_access test_privileges test_instances test_bad_input test_limits}
failed=0
for t in $tests; do
  start=$(date +%s)
  case $t in */*) script=tests/$t.py ;; *) script=tests/integration/$t.py ;; esac
  out=$logs/$(basename "$t").out
  if python3 "$script" >"$out" 2>&1; then
    echo "valgrind: $t passed ($(( $(date +%s) - start )) s)"
  else
    echo "valgrind: $t FAILED ($(( $(date +%s) - start )) s); see $out"
    failed=1
  fi
done
# --quiet: a memcheck log holds only errors ("==PID==" lines); valgrind's own
# notes ("--PID--", e.g. that it cannot emulate seccomp()) are not errors.
for f in "$logs"/*.log; do
  grep -q '^==[0-9]*==' "$f" || continue
  echo "valgrind: errors in $f:"
  head -40 "$f"
  failed=1
done
[ "$failed" -eq 0 ] && echo "valgrind: clean ($logs)"
exit "$failed"
