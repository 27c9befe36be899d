#!/usr/bin/env bash
# DNS benchmark: fedgate-edge's split-horizon DNS against unbound serving an
# equivalent local zone, in one run on this machine, with dnsperf:
#
#   fed        dnsperf -> fedgate-edge here/edge (N names of there.example: SNI
#              ingress or VIP answers, from the per-snapshot index)
#   unbound    dnsperf -> unbound with there.example as a local zone holding the
#              same N names and answers (local-data): the baseline
#   forwarded  dnsperf -> fedgate-edge -> unbound (here's upstream resolver,
#              local zone fwd.test with N names): the forwarding path
#   fwd-direct dnsperf -> unbound for the same fwd.test names (the floor)
#
# Each is run twice: flat out (-q outstanding queries, no rate limit) for the
# peak queries/s, then at half of its own measured peak with every answer's
# latency recorded (dnsperf -v) for p50/p99. Ratios to unbound are printed;
# the target (fed >= unbound in queries/s, fed p99 < 1 ms at half peak) is
# printed, never asserted.
#
# On a shared machine other work moves every figure: the load average is
# printed with each round, and ROUNDS=3 runs the four measurements in turn
# three times (fed, unbound, forwarded, fwd-direct, then again) and sums up
# each figure's median, so that a burst of load elsewhere hits both sides.
#
#   bash bench/dns.sh      # NET=127.56.0 N=1000 DURATION=10 THREADS=2 CLIENTS=8 OUTSTANDING=200 ROUNDS=1
#   EDGE_BIN=/path/to/older/fedgate-edge bash bench/dns.sh   # measure another build of the edge
#   LATENCY_RATE=60000 bash bench/dns.sh   # latency of every server at one rate, not at half its peak
#
# Bounded and self-cleaning: every process it starts is tracked by PID and
# stopped by PID on exit; the temporary directory is removed; every loop is
# bounded; all traffic is on $NET.0/24 of loopback. The edge runs with
# --dns-rate 0 (no per-client limit: dnsperf is one client).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

NET=${NET:-127.56.0}            # a loopback /24 of this bench's own
N=${N:-1000}                    # names per zone
DURATION=${DURATION:-10}        # seconds per dnsperf run
THREADS=${THREADS:-2}           # unbound num-threads (the edge uses every core)
CLIENTS=${CLIENTS:-8}           # dnsperf -c (sockets; spreads over SO_REUSEPORT threads)
OUTSTANDING=${OUTSTANDING:-200} # dnsperf -q
ROUNDS=${ROUNDS:-1}             # each measurement this many times, in turn; medians summed up
LATENCY_RATE=${LATENCY_RATE:-}  # q/s for the latency runs; default half of each one's own peak
export FEDGATE_LOG=${FEDGATE_LOG:-warn}

edge_bin=${EDGE_BIN:-$root/target/release/fedgate-edge} # another build to compare, if set
fedctl="$root/target/release/fedctl"

# --- tools ------------------------------------------------------------------
need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v unbound >/dev/null || need+=(unbound)
command -v dig >/dev/null || need+=(bind9-dnsutils)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi

echo "== building (release): fedgate-edge, fedctl"
timeout 1800 cargo build -q --release -p proxy -p control-plane

# --- processes, tracked by PID ------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fedgate-dns.XXXXXX")
declare -a PIDS=()
declare -A PID=()

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  local i pid
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    kill -TERM "${PIDS[$i]}" 2>/dev/null || true
  done
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid=${PIDS[$i]}
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [ "${KEEP:-0}" = 1 ]; then echo "   kept $tmp"; else rm -rf "$tmp"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() {
  local name=$1
  shift
  "$@" >"$tmp/$name.log" 2>&1 &
  PIDS+=("$!")
  PID[$name]=$!
}

# wait_dns NAME HOST PORT QNAME: until the server answers, bounded (20 s).
wait_dns() {
  local name=$1 host=$2 port=$3 q=$4 i
  for ((i = 0; i < 100; i++)); do
    if dig @"$host" -p "$port" +time=1 +tries=1 +short "$q" A 2>/dev/null | grep -q .; then return 0; fi
    if ! kill -0 "${PID[$name]}" 2>/dev/null; then
      echo "!! $name exited:"; tail -n 20 "$tmp/$name.log"; exit 1
    fi
    sleep 0.2
  done
  echo "!! $name does not answer $q on $host:$port"; tail -n 20 "$tmp/$name.log"; exit 1
}

EDGE=$NET.1
UPSTREAM=$NET.53
BASE=$NET.54
DNS_PORT=5300
UB_PORT=5353

# --- the federation: `here` (this edge) reaches N services of `there` ---------
mkdir -p "$tmp/fed"
{
  cat <<EOF
federation: {name: bench, trust_domain: bench.fedgate.example}
organisations:
  - {id: here, name: Here Council, kind: local-authority, membership: {agreement: FCA-A, expires: 2035-01-01}, dns: {zones: [here.example], upstreams: ["$UPSTREAM:$UB_PORT"]}}
  - {id: there, name: There Trust, kind: nhs-trust, membership: {agreement: FCA-H, expires: 2035-01-01}, dns: {zones: [there.example]}}
networks:
  - {org: here, label: roaming-staff, purpose: roaming-staff, cidrs: [127.0.0.0/8]}
  - {org: there, label: corporate, purpose: corporate, cidrs: [10.99.0.0/16]}
edges:
  - {org: here, name: edge, overlay: {quic: "$EDGE:4433", tcp: "$EDGE:4443"}, ingress: {addresses: ["$EDGE"], vip_prefix: 127.57.0.0/20}, dns: "$EDGE:$DNS_PORT"}
  - {org: there, name: edge, overlay: {quic: "$NET.2:4433", tcp: "$NET.2:4443"}}
agreements:
  - {id: ISA-B, title: Bench sharing, parties: [here, there], purpose: benchmark, legal_basis: test, owner: {name: B, role: Caldicott Guardian, org: there}, start: 2025-01-01, expires: 2035-01-01}
policies:
  - {id: here-to-there, description: Here staff reach there, from: {networks: [here/roaming-staff]}, to: {tags: [there/bench]}, action: allow, agreement: ISA-B}
services:
EOF
  # One in five a TCP service (answered with its VIP), the rest TLS (the SNI ingress).
  for ((i = 0; i < N; i++)); do
    if ((i % 5 == 0)); then proto=tcp; port=2575; else proto=tls; port=443; fi
    echo "  - {org: there, name: s$i, dns: [s$i.there.example], address: 10.99.$((i / 250)).$((i % 250 + 1)), ports: [$port], protocol: $proto, tags: [bench]}"
  done
} >"$tmp/fed/federation.yaml"
"$fedctl" check "$tmp/fed" >"$tmp/check.log" 2>&1 || { cat "$tmp/check.log"; exit 1; }
"$fedctl" certs dev --config "$tmp/fed" --out "$tmp/certs" >"$tmp/certs.log" 2>&1 || { cat "$tmp/certs.log"; exit 1; }
"$fedctl" snapshot --edge here/edge "$tmp/fed" --out "$tmp/here.snapshot.json" 2>>"$tmp/certs.log"

# --- unbound: here's upstream (fwd.test) and the baseline (there.example) ------
unbound_conf() { # NAME ADDR ZONE-FILE-BODY
  cat <<EOF
server:
    interface: $2@$UB_PORT
    port: $UB_PORT
    do-daemonize: no
    chroot: ""
    username: ""
    directory: "$tmp"
    pidfile: ""
    use-syslog: no
    logfile: ""
    verbosity: 0
    num-threads: $THREADS
    so-reuseport: yes
    access-control: 127.0.0.0/8 allow
    local-zone: "." refuse
$3
remote-control:
    control-enable: no
EOF
}
fwd_zone="    local-zone: \"fwd.test.\" static"
for ((i = 0; i < N; i++)); do
  fwd_zone+=$'\n'"    local-data: \"f$i.fwd.test. 30 IN A 127.58.$((i / 250)).$((i % 250 + 1))\""
done
# The same names and answers the edge gives: the SNI ingress, or the VIP.
base_zone="    local-zone: \"there.example.\" static"
for ((i = 0; i < N; i++)); do
  # A TCP service's VIP is filled in below, from the edge's own answer.
  if ((i % 5 == 0)); then a="@VIP$i@"; else a=$EDGE; fi
  base_zone+=$'\n'"    local-data: \"s$i.there.example. 30 IN A $a\""
done
unbound_conf upstream "$UPSTREAM" "$fwd_zone" >"$tmp/upstream.conf"

echo "== fedgate-edge here/edge: DNS on $EDGE:$DNS_PORT ($N names of there.example; upstream unbound $UPSTREAM:$UB_PORT)"
start upstream unbound -d -c "$tmp/upstream.conf"
wait_dns upstream "$UPSTREAM" "$UB_PORT" f0.fwd.test
start edge "$edge_bin" run --edge here/edge --snapshot "$tmp/here.snapshot.json" \
  --cert "$tmp/certs/edges/here-edge.pem" --key "$tmp/certs/edges/here-edge.key" --ca "$tmp/certs/ca.pem" \
  --dns "$EDGE:$DNS_PORT" --dns-ttl 30 --dns-rate 0 --admin "$EDGE:9100"
wait_dns edge "$EDGE" "$DNS_PORT" s1.there.example

# The baseline zone gets each TCP service's VIP exactly as the edge answers it.
for ((i = 0; i < N; i += 5)); do
  ip=$(dig @"$EDGE" -p "$DNS_PORT" +time=2 +tries=1 +short "s$i.there.example" A)
  [ -n "$ip" ] || { echo "!! no answer for s$i.there.example"; exit 1; }
  base_zone=${base_zone/@VIP$i@/$ip}
done
unbound_conf baseline "$BASE" "$base_zone" >"$tmp/baseline.conf"
start baseline unbound -d -c "$tmp/baseline.conf"
wait_dns baseline "$BASE" "$UB_PORT" s1.there.example
for i in 0 1 $((N - 1)); do
  e=$(dig @"$EDGE" -p "$DNS_PORT" +short "s$i.there.example" A)
  b=$(dig @"$BASE" -p "$UB_PORT" +short "s$i.there.example" A)
  [ "$e" = "$b" ] || { echo "!! s$i.there.example: edge $e, unbound $b"; exit 1; }
done
echo "   equivalent answers checked (edge and unbound agree)"

# --- dnsperf ----------------------------------------------------------------------
for ((i = 0; i < N; i++)); do echo "s$i.there.example A"; done >"$tmp/fed.q"
for ((i = 0; i < N; i++)); do echo "f$i.fwd.test A"; done >"$tmp/fwd.q"

declare -A QPS=() P50=() P99=() AVG=() LOST=()
declare -A ALL_QPS=() ALL_P99=()

# measure LABEL HOST PORT QUERYFILE
measure() {
  local label=$1 host=$2 port=$3 q=$4 out
  out=$(timeout $((DURATION + 30)) dnsperf -s "$host" -p "$port" -d "$q" -l "$DURATION" \
    -c "$CLIENTS" -T 2 -q "$OUTSTANDING" 2>&1)
  QPS[$label]=$(awk '/Queries per second/ {printf "%d", $4}' <<<"$out")
  AVG[$label]=$(awk '/Average Latency/ {printf "%.3f", $4 * 1000}' <<<"$out")
  LOST[$label]=$(awk '/Queries lost/ {print $3}' <<<"$out")
  local half=${LATENCY_RATE:-$((QPS[$label] / 2))}
  # At half the peak, every answer's latency: p50 and p99.
  timeout $((DURATION + 30)) dnsperf -s "$host" -p "$port" -d "$q" -l "$DURATION" \
    -c "$CLIENTS" -T 2 -q "$OUTSTANDING" -Q "$half" -v >"$tmp/$label.v" 2>/dev/null || true
  awk '$1 == ">" {print $NF}' "$tmp/$label.v" | sort -g >"$tmp/$label.lat"
  rm -f "$tmp/$label.v"
  local n
  n=$(wc -l <"$tmp/$label.lat")
  P50[$label]=$(awk -v n="$n" 'NR == int(n * 0.50) + 1 {printf "%.3f", $1 * 1000; exit}' "$tmp/$label.lat")
  P99[$label]=$(awk -v n="$n" 'NR == int(n * 0.99) + 1 {printf "%.3f", $1 * 1000; exit}' "$tmp/$label.lat")
  printf '   %-11s %9s q/s (lost %s, avg %s ms at peak) | at %s q/s: p50 %s ms, p99 %s ms (%s answers)\n' \
    "$label" "${QPS[$label]}" "${LOST[$label]}" "${AVG[$label]}" "$half" "${P50[$label]}" "${P99[$label]}" "$n"
  ALL_QPS[$label]+=" ${QPS[$label]}"
  ALL_P99[$label]+=" ${P99[$label]}"
}

# median WORDS...: the middle value (the lower middle of an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "== dnsperf: ${DURATION}s per run, -c $CLIENTS -T 2 -q $OUTSTANDING; unbound num-threads $THREADS; $(nproc) cores; $ROUNDS round(s)"
for ((round = 1; round <= ROUNDS; round++)); do
  echo "   round $round: load average $(cut -d' ' -f1-3 /proc/loadavg)"
  measure fed "$EDGE" "$DNS_PORT" "$tmp/fed.q"
  measure unbound "$BASE" "$UB_PORT" "$tmp/fed.q"
  measure forwarded "$EDGE" "$DNS_PORT" "$tmp/fwd.q"
  measure fwd-direct "$UPSTREAM" "$UB_PORT" "$tmp/fwd.q"
done
echo "   after: load average $(cut -d' ' -f1-3 /proc/loadavg)"
if ((ROUNDS > 1)); then
  for label in fed unbound forwarded fwd-direct; do
    # shellcheck disable=SC2086 # the lists are words
    QPS[$label]=$(median ${ALL_QPS[$label]})
    # shellcheck disable=SC2086
    P99[$label]=$(median ${ALL_P99[$label]})
  done
fi

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
echo
if ((ROUNDS > 1)); then echo "== summary (medians of $ROUNDS rounds)"; else echo "== summary"; fi
printf '   federation names: fedgate %s q/s vs unbound %s q/s: ratio %s (target >= 1.00)\n' \
  "${QPS[fed]}" "${QPS[unbound]}" "$(ratio "${QPS[fed]}" "${QPS[unbound]}")"
at=${LATENCY_RATE:+$LATENCY_RATE q/s}
printf '   federation names p99 at %s: %s ms (target < 1 ms at half peak); unbound %s ms\n' "${at:-half peak}" "${P99[fed]}" "${P99[unbound]}"
printf '   forwarded names: fedgate -> unbound %s q/s vs unbound direct %s q/s: ratio %s; p99 at %s %s ms\n' \
  "${QPS[forwarded]}" "${QPS[fwd-direct]}" "$(ratio "${QPS[forwarded]}" "${QPS[fwd-direct]}")" "${at:-half peak}" "${P99[forwarded]}"
rss=$(awk '/VmRSS/ {print $2}' "/proc/${PID[edge]}/status" 2>/dev/null || echo "?")
echo "   edge RSS after the run: ${rss} kB"
