#!/usr/bin/env bash
# Load benchmark: how long `fedctl check` takes, and how much memory it needs,
# on a generated federation of 100,000 policies (YAML -> parsed -> validated
# -> diagnostics printed). Prints figures against the targets (< 5 s wall,
# < 1 GiB max RSS); it does not fail when a target is missed.
#
#   bash bench/load-100k.sh            # POLICIES=100000 AT=2026-06-01 TIMEOUT=900 by default
#
# Also measured in the same run, to put the figure in context:
#   - `cat FILE > /dev/null`: reading the file, the floor;
#   - `fedctl check -o json FILE`: the same check with the diagnostics as JSON
#     instead of compiler-style text, which separates checking from rendering.
set -euo pipefail
cd "$(dirname "$0")/.."

POLICIES=${POLICIES:-100000}
SEED=${SEED:-1}
AT=${AT:-2026-06-01}       # fixed "now", so expiry warnings do not drift
TIMEOUT=${TIMEOUT:-900}    # seconds, per measured command
TARGET_WALL_S=5
TARGET_RSS_KIB=$((1024 * 1024))

if [ ! -x /usr/bin/time ]; then
  echo "== installing GNU time (/usr/bin/time is missing)"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q time
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fedgate-load.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

echo "== building (release): fedctl and the generator"
timeout 1800 cargo build -q --release -p control-plane --bin fedctl
timeout 1800 cargo build -q --release -p federation --example gen_federation

file="$tmp/federation-$POLICIES.yaml"
echo "== generating $POLICIES policies (seed $SEED)"
timeout "$TIMEOUT" ./target/release/examples/gen_federation --policies "$POLICIES" --seed "$SEED" >"$file"
bytes=$(wc -c <"$file")
echo "   $file: $(awk -v b="$bytes" 'BEGIN { printf "%.1f MB", b / 1e6 }'), $(wc -l <"$file") lines"

# Wall seconds from /usr/bin/time -v's "h:mm:ss" or "m:ss.ss".
wall_s() {
  awk -F': ' '/Elapsed \(wall clock\)/ {
    n = split($2, p, ":"); s = 0
    for (i = 1; i <= n; i++) s = s * 60 + p[i]
    printf "%.2f", s
  }' "$1"
}
rss_kib() { awk -F': ' '/Maximum resident set size/ { print $2 }' "$1"; }

# Run a command under /usr/bin/time -v with a time limit; stdout to $2.
measure() {
  local label=$1 out=$2 tv=$3
  shift 3
  local status=0
  timeout "$TIMEOUT" /usr/bin/time -v "$@" >"$out" 2>"$tv" || status=$?
  if [ "$status" -eq 124 ]; then
    echo "   $label: timed out after ${TIMEOUT}s"
  elif [ "$status" -ne 0 ]; then
    echo "   $label: exit status $status (last lines of output below)"
    tail -n 3 "$out" | sed 's/^/     /'
  fi
  return 0
}

echo "== baseline: cat FILE > /dev/null (the file is in the page cache after generation)"
TIMEFORMAT='%3R'
cat_s=$({ time cat "$file" >/dev/null; } 2>&1)
echo "   cat: ${cat_s} s"

echo "== fedctl check --at $AT FILE"
measure "fedctl check" "$tmp/check.out" "$tmp/check.time" ./target/release/fedctl check --at "$AT" "$file"
check_s=$(wall_s "$tmp/check.time")
check_kib=$(rss_kib "$tmp/check.time")
echo "   result: $(tail -n 1 "$tmp/check.out")"

echo "== fedctl check -o json --at $AT FILE (same check, no text rendering)"
measure "fedctl check -o json" "$tmp/json.out" "$tmp/json.time" ./target/release/fedctl check -o json --at "$AT" "$file"
json_s=$(wall_s "$tmp/json.time")
json_kib=$(rss_kib "$tmp/json.time")

echo
echo "== figures ($POLICIES policies, $(nproc) cores)"
awk -v cat_s="$cat_s" -v cs="$check_s" -v ck="$check_kib" -v js="$json_s" -v jk="$json_kib" \
  -v tw="$TARGET_WALL_S" -v tr="$TARGET_RSS_KIB" 'BEGIN {
  printf "  %-34s %10s %12s\n", "", "wall", "max RSS"
  printf "  %-34s %8.3f s %12s\n", "cat FILE > /dev/null", cat_s, "-"
  printf "  %-34s %8.2f s %9.1f MiB\n", "fedctl check (text diagnostics)", cs, ck / 1024
  printf "  %-34s %8.2f s %9.1f MiB\n", "fedctl check -o json", js, jk / 1024
  printf "  %-34s %8.2f s %9.1f MiB\n", "target", tw, tr / 1024
  printf "\n  fedctl check: wall %.2f s = %.2fx the 5 s target; max RSS %.1f MiB = %.2fx the 1 GiB target\n", cs, cs / tw, ck / 1024, ck / tr
  printf "  fedctl check -o json: wall %.2f s = %.2fx the 5 s target; max RSS %.1f MiB = %.2fx the 1 GiB target\n", js, js / tw, jk / 1024, jk / tr
}'
echo "  diagnostics printed: $(grep -c '^warning\|^error' "$tmp/check.out" || true) (by code: $(grep -o '"code": *"[^"]*"' "$tmp/json.out" | sed 's/.*"\(FG[0-9]*\)"/\1/' | sort | uniq -c | awk '{ printf "%s%s x%s", sep, $2, $1; sep = ", " }'))"
