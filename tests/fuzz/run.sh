#!/bin/sh
# Runs every libFuzzer target for SECONDS (default 60) against a copy of its seed corpus, two at
# a time (FUZZ_JOBS). Prints each target's executions and ends with "fuzz: N targets clean" and
# "N passed, M failed" (one per target, as .ci/run counts them); on a crash, names the input.
#   tests/fuzz/run.sh [SECONDS] [BUILD_DIR]
# BUILD_DIR (default build-fuzz) is configured with
#   CC=clang CXX=clang++ meson setup build-fuzz -Dfuzz=true
# Some targets only: FUZZ_TARGETS="fuzz_state fuzz_config". Extra libFuzzer flags:
# FUZZ_ARGS="-use_value_profile=1 ...". See docs/fuzzing.md.
set -u
cd "$(dirname "$0")/../.."
SECS=${1:-60}
BUILD_DIR=${2:-build-fuzz}
JOBS=${FUZZ_JOBS:-2}
TARGETS=${FUZZ_TARGETS:-$(cd tests/fuzz/corpus && ls -d fuzz_* | sort)}

for t in $TARGETS; do
  if [ ! -x "$BUILD_DIR/tests/fuzz/$t" ]; then
    echo "fuzz: $BUILD_DIR/tests/fuzz/$t is missing; build it: ninja -C $BUILD_DIR" >&2
    exit 2
  fi
done

# The corpus grows in a scratch copy: the tree is never modified. Kept when something fails.
work=$(mktemp -d "${TMPDIR:-/tmp}/vtpmd-fuzz.XXXXXX")
# Every sanitizer report is fatal; libFuzzer keeps the input that caused it.
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:symbolize=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

run_one() {
  t=$1
  dir="$work/$t"
  mkdir -p "$dir/corpus"
  cp tests/fuzz/corpus/"$t"/* "$dir/corpus/"
  seeds=$(ls "$dir/corpus" | wc -l)
  dict=""
  case $t in  # JSON inside: syntax, edge numbers and field names
    fuzz_control_message | fuzz_config | fuzz_state | fuzz_endpoint_spec) dict=-dict=tests/fuzz/json.dict ;;
  esac
  start=$(date +%s)
  # shellcheck disable=SC2086
  "$BUILD_DIR/tests/fuzz/$t" -max_total_time="$SECS" -timeout=25 -print_final_stats=1 \
    -artifact_prefix="$dir/" $dict ${FUZZ_ARGS:-} "$dir/corpus" >"$dir/log" 2>&1
  rc=$?
  took=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
  corpus=$(ls "$dir/corpus" | wc -l)
  if [ "$rc" -eq 0 ] && ! grep -q "^==[0-9]*==ERROR\|Test unit written to" "$dir/log"; then
    echo "ok $t ${execs:-0} $took $seeds $corpus" >"$dir/result"
  else
    input=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$dir/log" | head -1)
    echo "FAIL $t ${execs:-0} $took rc=$rc ${input:-no-input-saved} $dir/log" >"$dir/result"
  fi
}

running=0
for t in $TARGETS; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then
    wait
    running=0
  fi
done
wait

passed=0
failed=0
for t in $TARGETS; do
  set -- $(cat "$work/$t/result" 2>/dev/null || echo "FAIL $t 0 0 rc=? no-result $work/$t/log")
  if [ "$1" = ok ]; then
    passed=$((passed + 1))
    rate=$(( $3 / ($4 > 0 ? $4 : 1) ))
    echo "fuzz: $t clean: $3 execs in $4 s ($rate/s), corpus $5 -> $6 inputs"
  else
    failed=$((failed + 1))
    echo "fuzz: $t FAILED ($5) after $3 execs in $4 s"
    echo "fuzz:   crashing input: $6"
    echo "fuzz:   log: $7 (reproduce: $BUILD_DIR/tests/fuzz/$t $6)"
    sed -n '/^==[0-9]*==ERROR\|runtime error\|deadly signal/,+12p' "$7" | head -20 | sed 's/^/fuzz:   | /'
  fi
done

if [ "$failed" -eq 0 ]; then
  rm -rf "$work"
  echo "fuzz: $passed targets clean"
else
  echo "fuzz: $failed of $((passed + failed)) targets failed; inputs and logs kept in $work"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
