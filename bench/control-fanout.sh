#!/usr/bin/env bash
# Control-plane fan-out benchmark: how long after an acknowledged apply every
# edge holds the new version, for 1,000 and 10,000 edges.
#
#   generated federation (N/10 organisations x 10 edges, 5 policies per organisation)
#     -> fedgate-control --init on $NET.1:7443 (embedded store, mutual TLS)
#     <- watchers: N light edges in one process, each with its own certificate,
#        one keep-alive mTLS connection, long-polling /v1/snapshot, verifying
#        every snapshot's signature and digest
#     <- an admin's POST /v1/apply (a new policy), then per-edge delay until
#        it holds the new version; the control plane's RSS and CPU from /proc
#
#   bash bench/control-fanout.sh     # SIZES="1000 10000" CHANGE=policy|revocation NET=127.77.0 DEADLINE=300 MIN_AVAILABLE_MIB=3072 KEEP=0
#
# Prints figures against the target (10,000 edges within 1 s at p99); asserts
# nothing. Bounded and self-cleaning: every process it starts is tracked by
# PID and stopped by PID on exit, every wait is bounded, the temporary
# directory is removed; all traffic is on $NET.1 of loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

NET=${NET:-127.77.0}
SIZES=${SIZES:-1000 10000}
EDGES_PER_ORG=${EDGES_PER_ORG:-10}
POLICIES_PER_ORG=${POLICIES_PER_ORG:-5}
DEADLINE=${DEADLINE:-300}            # seconds, per phase of the watcher
CHANGE=${CHANGE:-policy}             # policy (one member's documents change) or revocation (every edge's does)
MIN_AVAILABLE_MIB=${MIN_AVAILABLE_MIB:-3072}  # stop everything below this much free memory
export FEDGATE_LOG=${FEDGATE_LOG:-warn,control_plane=info}
ADDR="$NET.1:7443"

fedctl="$root/target/release/fedctl"
control_bin="$root/target/release/fedgate-control"
gen="$root/target/release/examples/gen_federation"
watchers="$root/target/release/examples/watchers"

echo "== building (release): fedgate-control, fedctl, examples gen_federation and watchers"
timeout 1800 cargo build -q --release -p control-plane -p federation --bins --example watchers --example gen_federation

# One socket per watcher on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile=$(ulimit -n)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fedgate-fanout.XXXXXX")
declare -a PIDS=()

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  local i pid
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    stop_pid "${PIDS[$i]}"
  done
  if [ "${KEEP:-0}" = 1 ]; then echo "   kept $tmp"; else rm -rf "$tmp"; fi
  exit "$status"
}

# stop_pid PID: TERM, up to 5 s, then KILL.
stop_pid() {
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# published LOG VERSION: the control plane's "version published" line for VERSION.
published() {
  sed 's/\x1b\[[0-9;]*m//g' "$1" | grep 'version published' | grep -o "version=$2 .*" || echo "version $2 not published"
}

# guard CONTROL_PID WATCHERS_PID SECONDS: stop both (by PID) if the machine's
# available memory falls below MIN_AVAILABLE_MIB, so that the bench never
# starves other work; bounded by SECONDS.
guard() {
  local i avail
  for ((i = 0; i < $3 * 2; i++)); do
    avail=$(awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo)
    if [ "$avail" -lt "$MIN_AVAILABLE_MIB" ]; then
      echo "!! only $avail MiB of memory left: stopping the control plane and the watchers"
      kill -TERM "$2" "$1" 2>/dev/null || true
      return 0
    fi
    sleep 0.5
  done
}

# wait_log FILE PATTERN SECONDS PID: until FILE has PATTERN, bounded.
wait_log() {
  local file=$1 pattern=$2 secs=$3 pid=$4 i
  for ((i = 0; i < secs * 10; i++)); do
    if grep -q "$pattern" "$file" 2>/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "!! process $pid exited before '$pattern':"; tail -n 20 "$file"; exit 1
    fi
    sleep 0.1
  done
  echo "!! '$pattern' not in $file within ${secs}s:"; tail -n 20 "$file"; exit 1
}

echo "== bench CA, control-plane certificate and snapshot key in $tmp"
"$fedctl" certs init-ca --trust-domain synthetic.fedgate.example --out "$tmp/ca" 2>"$tmp/certs.log"
"$fedctl" certs issue --ca "$tmp/ca" --control c1 --out "$tmp/control" 2>>"$tmp/certs.log"
"$fedctl" certs signing-key --out "$tmp/control" 2>>"$tmp/certs.log"
echo "   $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), ulimit -n $nofile"

for n in $SIZES; do
  orgs=$((n / EDGES_PER_ORG))
  policies=$((orgs * POLICIES_PER_ORG))
  if [ "$nofile" != unlimited ] && [ "$n" -gt $((nofile - 500)) ]; then
    echo "!! ulimit -n is $nofile: too few for $n watchers; skipping"
    continue
  fi
  dir="$tmp/n$n"
  mkdir -p "$dir/fed"
  echo
  echo "==== $n edges: $orgs organisations x $EDGES_PER_ORG edges, $policies policies"
  "$gen" --policies "$policies" --orgs "$orgs" --edges-per-org "$EDGES_PER_ORG" >"$dir/fed/federation.yaml"
  if ! "$fedctl" check -o json "$dir/fed" >"$dir/check.json" 2>&1; then
    echo "!! fedctl check refused the generated federation:"; head -c 2000 "$dir/check.json"; exit 1
  fi
  echo "   fedctl check: no errors ($(grep -o '"severity": *"warning"' "$dir/check.json" | wc -l) warnings)"

  "$control_bin" run --data "$dir/data" --listen "$ADDR" \
    --cert "$tmp/control/c1.pem" --key "$tmp/control/c1.key" --ca "$tmp/ca/ca.pem" \
    --signing-key "$tmp/control/signing.key" --init "$dir/fed" --long-poll-secs 30 \
    >"$dir/control.log" 2>&1 &
  cpid=$!
  PIDS+=("$cpid")
  wait_log "$dir/control.log" "version published" 600 "$cpid"
  echo "   fedgate-control (PID $cpid): $(published "$dir/control.log" 1)"

  timeout $((DEADLINE * 3 + 120)) "$watchers" --control "$ADDR" --ca "$tmp/ca" \
    --signing-pub "$tmp/control/signing.pub" --config "$dir/fed" \
    --control-pid "$cpid" --deadline-secs "$DEADLINE" --change "$CHANGE" &
  wpid=$!
  PIDS+=("$wpid")
  guard "$cpid" "$wpid" $((DEADLINE * 3 + 120)) &
  gpid=$!
  PIDS+=("$gpid")
  wait "$wpid" || echo "!! watchers ended with status $?"
  stop_pid "$gpid"
  echo "   fedgate-control: $(published "$dir/control.log" 2)"
  stop_pid "$cpid"
  rm -rf "$dir"
done

echo
echo "== target: 10,000 edges hold the new version within 1 s of the acknowledged apply, at p99"
