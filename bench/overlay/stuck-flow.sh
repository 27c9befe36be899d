#!/usr/bin/env bash
# Reproduces a visited-edge flow that never ends (found by bench/overlay.sh):
# iperf3 -P 8 through a VIP over the QUIC overlay; when the test ends, the
# home edge closes its side of each flow, but now and then one flow stays
# open on the visited edge for good: its client socket sits in FIN-WAIT-2
# with unread bytes, `fedgate_active_flows` stays above 0, and the flow's
# audit record is only written when the edge stops. Fixed since (the relay
# awaits the peer's STOP_SENDING); kept as a check of the build in this tree.
#
#   bash bench/overlay/stuck-flow.sh        # RUNS=10 NET=127.56.0; about a minute
#
# Prints the visited and home edges' active flows after each run (every
# client has gone, so both should be 0) and the stuck sockets at the end.
# Exit status 0 when it reproduced, 1 when it did not. Bounded, self-cleaning,
# traffic on $NET.0/24 of loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
NET=${NET:-127.56.0}
RUNS=${RUNS:-10}
export FEDGATE_LOG=${FEDGATE_LOG:-warn}
command -v iperf3 >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q iperf3; }
timeout 1800 cargo build -q --release -p proxy -p control-plane
edge="$root/target/release/fedgate-edge"
fedctl="$root/target/release/fedctl"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/fedgate-stuck.XXXXXX")
declare -a PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$tmp/fed"
cat >"$tmp/fed/federation.yaml" <<EOF
federation: {name: stuck, trust_domain: stuck.fedgate.example}
organisations:
  - {id: away, name: Away, kind: local-authority, membership: {agreement: FCA-A, expires: 2035-01-01}, dns: {zones: [away.example]}}
  - {id: home, name: Home, kind: nhs-trust, membership: {agreement: FCA-H, expires: 2035-01-01}, dns: {zones: [home.example]}}
networks:
  - {org: away, label: roaming-staff, purpose: roaming-staff, cidrs: [127.0.0.0/8]}
  - {org: home, label: corporate, purpose: corporate, cidrs: [10.99.0.0/16]}
edges:
  - {org: away, name: edge, overlay: {quic: "$NET.1:4433", tcp: "$NET.1:4443"}, ingress: {addresses: ["$NET.1"], vip_prefix: $NET.128/25}}
  - {org: home, name: edge, overlay: {quic: "$NET.2:4433", tcp: "$NET.2:4443"}}
services:
  - {org: home, name: iperf, dns: [iperf.home.example], address: $NET.11, ports: [5201], protocol: tcp}
agreements:
  - {id: ISA-S, title: Stuck, parties: [away, home], purpose: test, legal_basis: test, owner: {name: S, role: Caldicott Guardian, org: home}, start: 2025-01-01, expires: 2035-01-01}
policies:
  - {id: roaming-to-home, description: Away staff reach home, from: {networks: [away/roaming-staff]}, to: {services: [home/iperf]}, action: allow, agreement: ISA-S}
EOF
"$fedctl" certs dev --config "$tmp/fed" --out "$tmp/certs" >/dev/null 2>&1
for e in away home; do
  "$fedctl" snapshot --edge "$e/edge" "$tmp/fed" --out "$tmp/$e.json" 2>/dev/null
done

iperf3 -s -B "$NET.11" -p 5201 >"$tmp/iperf3.log" 2>&1 &
PIDS+=("$!")
for e in home:2 away:1; do
  n=${e%%:*} h=${e##*:}
  extra=()
  [ "$n" = away ] && extra=(--vips)
  "$edge" run --edge "$n/edge" --snapshot "$tmp/$n.json" --cert "$tmp/certs/edges/$n-edge.pem" \
    --key "$tmp/certs/edges/$n-edge.key" --ca "$tmp/certs/ca.pem" --admin "$NET.$h:9100" \
    --conn-rate 100000 --drain-secs 1 "${extra[@]}" >"$tmp/$n.log" 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 1 100); do
    curl -s --max-time 1 "http://$NET.$h:9100/readyz" >/dev/null && break
    sleep 0.1
  done
done
active() { curl -s --max-time 5 "http://$NET.$1:9100/metrics" | awk '$1 == "fedgate_active_flows" { print $2 }'; }

echo "== $RUNS x iperf3 -c $NET.129 -P 8 -t 2 (the VIP of home/iperf), then the edges' fedgate_active_flows"
stuck=0
for i in $(seq 1 "$RUNS"); do
  timeout 30 iperf3 -c "$NET.129" -p 5201 -P 8 -t 2 >/dev/null 2>&1 || echo "   run $i: iperf3 failed"
  sleep 1
  v=$(active 1) h=$(active 2)
  echo "   run $i: visited edge ${v:-?} active, home edge ${h:-?} active"
  [ "${v:-0}" != 0 ] && stuck=1
done
echo "== the visited edge's client-side sockets still open (State, Recv-Q = client bytes it no longer reads):"
ss -tn state fin-wait-2 "( sport = :5201 )" | grep "$NET.129" | head -10 || true
if [ "$stuck" = 1 ]; then
  echo "REPRODUCED: flows stay open on the visited edge after the home edge and the client have closed"
  exit 0
fi
echo "not reproduced in $RUNS runs (it is a race; try RUNS=30)"
exit 1
