#!/usr/bin/env bash
# Fuzzes each target for a bounded time, starting from the committed corpus (fuzz/corpus/<target>/).
#
#   fuzz/run.sh [SECONDS_PER_TARGET]   (default 30)
#
# For CI: needs a nightly toolchain (skips with exit 0 when there is none) and installs cargo-fuzz
# when missing. Targets run one after the other, each on a temporary copy of its corpus, so the
# repository is never written to except fuzz/target (build) and fuzz/artifacts (crashing inputs
# and the log of a failed run; both ignored by git). Exits 1 if any target found a crash, after printing the input's path.
#
# Growing the committed corpus is a manual step (CI never does it):
#   cargo +nightly fuzz run <target> /tmp/<target> fuzz/corpus/<target> -- -max_total_time=180
#   cp /tmp/<target>/* fuzz/corpus/<target>/ && cargo +nightly fuzz cmin <target> -- -set_cover_merge=1
# (envelope also with -use_counters=0 to stay at a few hundred files), then `cargo test`.
set -euo pipefail
cd "$(dirname "$0")"

SECONDS_PER_TARGET=${1:-30}
TOOLCHAIN=${FUZZ_TOOLCHAIN:-nightly}
TARGETS=(frame_reader envelope upgrade_head)

if ! [[ $SECONDS_PER_TARGET =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: fuzz/run.sh [SECONDS_PER_TARGET]" >&2
  exit 2
fi
if ! command -v rustup >/dev/null || ! rustup toolchain list | grep -q "^$TOOLCHAIN"; then
  echo "fuzz: no $TOOLCHAIN toolchain (rustup toolchain install $TOOLCHAIN); skipping"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

cargo "+$TOOLCHAIN" fuzz build

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
failed=()
for target in "${TARGETS[@]}"; do
  echo "=== fuzz $target for ${SECONDS_PER_TARGET}s"
  mkdir -p "$WORK/$target"
  cp corpus/"$target"/* "$WORK/$target/"
  log="$WORK/$target.log"
  status=0
  cargo "+$TOOLCHAIN" fuzz run "$target" "$WORK/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -print_final_stats=1 >"$log" 2>&1 || status=$?
  if [ "$status" -eq 0 ]; then
    grep -E '^#[0-9]+[[:space:]]+DONE|^stat::' "$log" || tail -5 "$log"
  else
    # libFuzzer logs every new input, then the failure with long backtraces: show where the
    # failure starts and how the run ended; the whole log is kept next to the input.
    mkdir -p artifacts && cp "$log" "artifacts/$target.log"
    first=$(grep -n -m1 -E 'panicked at|==[0-9]+==ERROR|ERROR: libFuzzer' "$log" | cut -d: -f1 || true)
    if [ -n "$first" ]; then
      sed -n "${first},$((first + 20))p" "$log"
      echo "[...]"
    fi
    grep -E '^SUMMARY|Test unit written|^Error: ' "$log" || tail -n 12 "$log"
    echo "(whole log: fuzz/artifacts/$target.log)"
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    if [ -n "$artifact" ]; then
      failed+=("$target: $(realpath "$artifact")")
    else
      failed+=("$target: exit status $status, no input written (see the log above)")
    fi
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo
  echo "fuzz: FAILED"
  for f in "${failed[@]}"; do echo "  $f"; done
  echo "Reproduce: cargo +$TOOLCHAIN fuzz run <target> <input> (from fuzz/); add the input to"
  echo "fuzz/corpus/<target>/ to replay it in cargo test once fixed."
  exit 1
fi
echo "fuzz: ${#TARGETS[@]} targets, ${SECONDS_PER_TARGET}s each, no crash"
