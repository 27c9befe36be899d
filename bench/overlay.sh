#!/usr/bin/env bash
# Overlay benchmark: client -> edge B (visited) -> edge A (home) -> origin,
# against the same hop made by other means, all in one run on this machine:
#
#   direct   client -> origin
#   fedgate  client -> VIP of fedgate-edge away/edge -> QUIC mTLS -> fedgate-edge home/edge -> origin
#   fedgate-tcp  the same with both edges run --no-quic: the TLS-over-TCP overlay (one connection per flow)
#   stunnel  client -> stunnel client mode -> TLS (mutual, dev CA) -> stunnel server mode -> origin
#   haproxy  client -> haproxy tcp -> `ssl crt .. ca-file .. verify required` -> haproxy `bind .. ssl .. verify required` -> origin
#   plain    client -> haproxy tcp -> haproxy tcp -> origin (no TLS: the floor of any relay pair)
#
# Figures: iperf3 bulk throughput (-P 1, -P 8), wrk req/s and p50/p99 latency
# with keep-alive and with a new connection per request, 1,000 sequential
# connect + 1-byte echo round trips, RSS per idle flow, and a checksum of a
# 32 MiB download through every path. Each figure is printed with its ratio
# to direct and to each peer; targets are printed as ratios, never asserted.
#
#   bash bench/overlay.sh     # NET=127.55.0 DURATION=5 FLOWS=10000 PEER_FLOWS=9000 CONNECTS=1000 FEDGATE_LOG=warn
#
# Bounded and self-cleaning: every process it starts is tracked by PID and
# stopped by PID on exit; the temporary directory is removed; every loop is
# bounded in count and time; all traffic is on $NET.0/24 of loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

NET=${NET:-127.55.0}                 # a loopback /24 of this bench's own
DURATION=${DURATION:-5}              # seconds per iperf3 / wrk run
FLOWS=${FLOWS:-10000}                # idle flows through fedgate
PEER_FLOWS=${PEER_FLOWS:-9000}       # idle flows through fedgate-tcp, stunnel, haproxy, plain (2 fds per flow per side)
CONNECTS=${CONNECTS:-1000}           # sequential connects per path
ROUNDS=${ROUNDS:-1}                  # wrk rounds, paths in turn; figures are medians
NC_CONNS=${NC_CONNS:-32}             # wrk connections at once, new connection per request
NC_LOW=${NC_LOW:-2}                  # the same at low load (2: the fewest wrk -t2 runs)
export NC_CONNS NC_LOW
round_tag=$([ "$ROUNDS" -gt 1 ] && echo "round " || true)
export FEDGATE_LOG=${FEDGATE_LOG:-warn}
# The edges' relay threads (`--threads`; an older EDGE_BIN ignores it): one
# each, since the two edges share this machine's cores with the client and
# the origin (the haproxy pair keeps nbthread 2, its better setting here).
export FEDGATE_THREADS=${FEDGATE_THREADS:-1}
RUN_TIMEOUT=$((DURATION + 25))       # per measured command

tool="$root/bench/overlay/tool.py"
edge_bin=${EDGE_BIN:-$root/target/release/fedgate-edge} # another build to compare, if set
fedctl="$root/target/release/fedctl"

# --- tools ------------------------------------------------------------------
need=()
command -v stunnel4 >/dev/null || need+=(stunnel4)
command -v haproxy >/dev/null || need+=(haproxy)
command -v iperf3 >/dev/null || need+=(iperf3)
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v pgrep >/dev/null || need+=(procps)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  apt-get update -q
  # policy-rc.d or not, the bench starts none of these as services.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi

echo "== building (release): fedgate-edge, fedctl"
timeout 1800 cargo build -q --release -p proxy -p control-plane

# Open files: each relay side holds two sockets per flow.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
nofile=$(ulimit -n)
if [ "$nofile" != unlimited ]; then
  if [ "$FLOWS" -gt $((nofile - 500)) ]; then
    echo "   ulimit -n is $nofile: FLOWS lowered from $FLOWS to $((nofile - 500))"
    FLOWS=$((nofile - 500))
  fi
  if [ "$PEER_FLOWS" -gt $(((nofile - 500) / 2)) ]; then
    echo "   ulimit -n is $nofile: PEER_FLOWS lowered from $PEER_FLOWS to $(((nofile - 500) / 2))"
    PEER_FLOWS=$(((nofile - 500) / 2))
  fi
fi
PEER_MAXCONN=$((PEER_FLOWS + 200))

# --- processes, tracked by PID ------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fedgate-overlay.XXXXXX")
chmod 755 "$tmp"
declare -a PIDS=()
declare -A PID=()

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  local i pid
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid=${PIDS[$i]}
    kill -TERM "$pid" 2>/dev/null || true
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

# start NAME CMD...: run in the background, stdout+stderr to $tmp/NAME.log.
start() {
  local name=$1
  shift
  "$@" >"$tmp/$name.log" 2>&1 &
  PIDS+=("$!")
  PID[$name]=$!
}

# wait_tcp HOST PORT SECONDS NAME: until HOST:PORT accepts, bounded.
wait_tcp() {
  local host=$1 port=$2 secs=$3 name=$4 i
  for ((i = 0; i < secs * 10; i++)); do
    if timeout 1 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null; then return 0; fi
    if ! kill -0 "${PID[$name]}" 2>/dev/null; then
      echo "!! $name exited before $host:$port was up:"; tail -n 20 "$tmp/$name.log"; exit 1
    fi
    sleep 0.1
  done
  echo "!! $host:$port ($name) not up within ${secs}s:"; tail -n 20 "$tmp/$name.log"; exit 1
}

a() { echo "$NET.$1"; }

# --- addresses ----------------------------------------------------------------
# origins: nginx .10:8080 (HTTP), iperf3 .11:5201, echo .12:7000
# fedgate: away/edge .1 (overlay :4433 QUIC, :4443 TCP; VIPs from .129), home/edge .2
# fedgate-tcp: away/edge .3 (VIPs from .193), home/edge .4, both --no-quic
# stunnel .21 -> .22, haproxy .31 -> .32, plain .41 -> .42
ORIG_HTTP="$(a 10):8080"
ORIG_IPERF="$(a 11):5201"
ORIG_ECHO="$(a 12):7000"
read -r -a PATHS <<<"${PATHS:-direct fedgate fedgate-tcp stunnel haproxy plain}"
PARTS=" ${PARTS:-integrity idle bulk http connects} "  # a subset, for quick experiments
part() { [[ $PARTS == *" $1 "* ]]; }
declare -A HTTP IPERF ECHO SIDES
HTTP[direct]=$ORIG_HTTP IPERF[direct]=$ORIG_IPERF ECHO[direct]=$ORIG_ECHO
# VIPs are given in service-id order from the prefix's first host:
# home/http, home/iperf, home/sink -> .129, .130, .131 (proxy/src/node.rs `vips`).
HTTP[fedgate]="$(a 129):8080" IPERF[fedgate]="$(a 130):5201" ECHO[fedgate]="$(a 131):7000"
HTTP[fedgate-tcp]="$(a 193):8080" IPERF[fedgate-tcp]="$(a 194):5201" ECHO[fedgate-tcp]="$(a 195):7000"
for p in stunnel:21 haproxy:31 plain:41; do
  n=${p%%:*} h=${p##*:}
  HTTP[$n]="$(a "$h"):8080" IPERF[$n]="$(a "$h"):5201" ECHO[$n]="$(a "$h"):7000"
done

# --- federation, certificates, snapshots --------------------------------------
echo "== federation on $NET.0/24, dev CA and certificates, snapshots"
fed_yaml() { # AWAY_HOST HOME_HOST VIP_PREFIX
  cat <<EOF
federation: {name: bench, trust_domain: bench.fedgate.example}
organisations:
  - {id: away, name: Away Council, kind: local-authority, membership: {agreement: FCA-A, expires: 2035-01-01}, dns: {zones: [away.example]}}
  - {id: home, name: Home Trust, kind: nhs-trust, membership: {agreement: FCA-H, expires: 2035-01-01}, dns: {zones: [home.example]}}
networks:
  - {org: away, label: roaming-staff, purpose: roaming-staff, cidrs: [127.0.0.0/8]}
  - {org: home, label: corporate, purpose: corporate, cidrs: [10.99.0.0/16]}
edges:
  - {org: away, name: edge, overlay: {quic: "$1:4433", tcp: "$1:4443"}, ingress: {addresses: ["$1"], vip_prefix: $3}}
  - {org: home, name: edge, overlay: {quic: "$2:4433", tcp: "$2:4443"}}
services:
  - {org: home, name: http, dns: [http.home.example], address: $(a 10), ports: [8080], protocol: tcp}
  - {org: home, name: iperf, dns: [iperf.home.example], address: $(a 11), ports: [5201], protocol: tcp}
  - {org: home, name: sink, dns: [sink.home.example], address: $(a 12), ports: [7000], protocol: tcp}
agreements:
  - {id: ISA-B, title: Bench sharing, parties: [away, home], purpose: benchmark, legal_basis: test, owner: {name: B, role: Caldicott Guardian, org: home}, start: 2025-01-01, expires: 2035-01-01}
policies:
  - {id: roaming-to-home, description: Away roaming staff reach home systems, from: {networks: [away/roaming-staff]}, to: {services: [home/http, home/iperf, home/sink]}, action: allow, agreement: ISA-B}
EOF
}
mkdir -p "$tmp/fed" "$tmp/fed-tcp"
fed_yaml "$(a 1)" "$(a 2)" "$(a 128)/25" >"$tmp/fed/federation.yaml"
fed_yaml "$(a 3)" "$(a 4)" "$(a 192)/26" >"$tmp/fed-tcp/federation.yaml"
for f in fed fed-tcp; do
  "$fedctl" check "$tmp/$f" >"$tmp/check.log" 2>&1 || { cat "$tmp/check.log"; exit 1; }
done
# One dev CA, one certificate per edge identity; both pairs use the same identities.
"$fedctl" certs dev --config "$tmp/fed" --out "$tmp/certs" >"$tmp/certs.log" 2>&1 || { cat "$tmp/certs.log"; exit 1; }
for e in away home; do
  "$fedctl" snapshot --edge "$e/edge" "$tmp/fed" --out "$tmp/$e.snapshot.json" 2>>"$tmp/certs.log"
  "$fedctl" snapshot --edge "$e/edge" "$tmp/fed-tcp" --out "$tmp/$e-tcp.snapshot.json" 2>>"$tmp/certs.log"
  cat "$tmp/certs/edges/$e-edge.pem" "$tmp/certs/edges/$e-edge.key" >"$tmp/certs/$e.combined.pem"
done
CA="$tmp/certs/ca.pem"

# --- origins ------------------------------------------------------------------
echo "== origins: nginx $ORIG_HTTP, iperf3 -s $ORIG_IPERF, echo $ORIG_ECHO"
mkdir -p "$tmp/www" "$tmp/nginx"
printf 'hello, world\n' >"$tmp/www/hello.txt"
head -c $((32 * 1024 * 1024)) /dev/urandom >"$tmp/www/big.bin"
chmod -R a+rX "$tmp/www"
cat >"$tmp/nginx/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile $nofile;
pid $tmp/nginx/nginx.pid;
error_log $tmp/nginx/error.log warn;
events { worker_connections 16000; }
http {
  access_log off;
  sendfile on;
  tcp_nodelay on;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  server {
    listen $ORIG_HTTP backlog=4096;
    root $tmp/www;
  }
}
EOF
start nginx nginx -p "$tmp/nginx" -e "$tmp/nginx/error.log" -c "$tmp/nginx/nginx.conf"
start iperf3 iperf3 -s -B "$(a 11)" -p 5201
start echo env DEADLINE=3600 python3 "$tool" echo "$ORIG_ECHO"
wait_tcp "$(a 10)" 8080 10 nginx
wait_tcp "$(a 11)" 5201 10 iperf3
wait_tcp "$(a 12)" 7000 10 echo

# --- fedgate edges ------------------------------------------------------------
# start_edges PATH SUFFIX AWAY_HOST HOME_HOST EXTRA...: home/edge, then away/edge with its VIPs.
start_edges() {
  local path=$1 sfx=$2 ah=$3 hh=$4 hp
  shift 4
  start "edge_home$sfx" "$edge_bin" run --edge home/edge --snapshot "$tmp/home$sfx.snapshot.json" \
    --cert "$tmp/certs/edges/home-edge.pem" --key "$tmp/certs/edges/home-edge.key" \
    --audit "$tmp/home$sfx.audit.jsonl" --admin "$hh:9100" "${edge_common[@]}" "$@"
  wait_tcp "$hh" 9100 20 "edge_home$sfx"
  start "edge_away$sfx" "$edge_bin" run --edge away/edge --snapshot "$tmp/away$sfx.snapshot.json" \
    --cert "$tmp/certs/edges/away-edge.pem" --key "$tmp/certs/edges/away-edge.key" \
    --audit "$tmp/away$sfx.audit.jsonl" --admin "$ah:9100" --vips "${edge_common[@]}" "$@"
  wait_tcp "$ah" 9100 20 "edge_away$sfx"
  for hp in "${HTTP[$path]}" "${IPERF[$path]}" "${ECHO[$path]}"; do
    wait_tcp "${hp%:*}" "${hp#*:}" 10 "edge_away$sfx"
  done
  SIDES[$path]="${PID[edge_away$sfx]},${PID[edge_home$sfx]}"
}
edge_common=(--ca "$CA" --conn-rate 100000 --max-flows 100000 --max-flows-per-peer 50000 --drain-secs 1)
echo "== fedgate: home/edge $(a 2), away/edge $(a 1), QUIC overlay (FEDGATE_LOG=$FEDGATE_LOG, --threads $FEDGATE_THREADS, audit on)"
start_edges fedgate "" "$(a 1)" "$(a 2)"
echo "== fedgate-tcp: home/edge $(a 4), away/edge $(a 3), --no-quic: the TLS-over-TCP overlay"
start_edges fedgate-tcp -tcp "$(a 3)" "$(a 4)" --no-quic

# --- stunnel pair ---------------------------------------------------------------
echo "== stunnel pair $(a 21) -> $(a 22) (TLS, mutual, verifyChain against the dev CA)"
stunnel_conf() { # SIDE(client|server)
  local side=$1 svc port
  echo "foreground = yes"
  echo "pid ="
  echo "debug = 3"
  echo "socket = l:TCP_NODELAY=1"
  echo "socket = r:TCP_NODELAY=1"
  for svc in http:8080:$ORIG_HTTP iperf:5201:$ORIG_IPERF echo:7000:$ORIG_ECHO; do
    IFS=: read -r name port ohost oport <<<"$svc"
    echo "[$name]"
    echo "CAfile = $CA"
    echo "verifyChain = yes"
    if [ "$side" = client ]; then
      echo "client = yes"
      echo "accept = $(a 21):$port"
      echo "connect = $(a 22):$port"
      echo "cert = $tmp/certs/edges/away-edge.pem"
      echo "key = $tmp/certs/edges/away-edge.key"
    else
      echo "accept = $(a 22):$port"
      echo "connect = $ohost:$oport"
      echo "requireCert = yes"
      echo "cert = $tmp/certs/edges/home-edge.pem"
      echo "key = $tmp/certs/edges/home-edge.key"
    fi
  done
}
stunnel_conf server >"$tmp/stunnel-a.conf"
stunnel_conf client >"$tmp/stunnel-b.conf"
start stunnel_a stunnel4 "$tmp/stunnel-a.conf"
start stunnel_b stunnel4 "$tmp/stunnel-b.conf"
for port in 8080 5201 7000; do
  wait_tcp "$(a 22)" "$port" 10 stunnel_a
  wait_tcp "$(a 21)" "$port" 10 stunnel_b
done
SIDES[stunnel]="${PID[stunnel_b]},${PID[stunnel_a]}"

# --- haproxy pairs --------------------------------------------------------------
haproxy_conf() { # SIDE(b|a) TLS(1|0) B_HOST A_HOST
  local side=$1 tls=$2 bh=$3 ah=$4 name port ohost oport
  cat <<EOF
global
  maxconn $PEER_MAXCONN
  nbthread 2
defaults
  mode tcp
  timeout connect 5s
  timeout client 10m
  timeout server 10m
EOF
  for svc in http:8080:$ORIG_HTTP iperf:5201:$ORIG_IPERF echo:7000:$ORIG_ECHO; do
    IFS=: read -r name port ohost oport <<<"$svc"
    if [ "$side" = b ]; then
      echo "frontend f_$name"
      echo "  bind $bh:$port"
      echo "  default_backend b_$name"
      echo "backend b_$name"
      if [ "$tls" = 1 ]; then
        echo "  server a $ah:$port ssl crt $tmp/certs/away.combined.pem ca-file $CA verify required"
      else
        echo "  server a $ah:$port"
      fi
    else
      echo "frontend f_$name"
      if [ "$tls" = 1 ]; then
        echo "  bind $ah:$port ssl crt $tmp/certs/home.combined.pem ca-file $CA verify required"
      else
        echo "  bind $ah:$port"
      fi
      echo "  default_backend b_$name"
      echo "backend b_$name"
      echo "  server o $ohost:$oport"
    fi
  done
}
echo "== haproxy pair $(a 31) -> $(a 32) (ssl crt/ca-file/verify required both ways); plain haproxy pair $(a 41) -> $(a 42)"
haproxy_conf a 1 "$(a 31)" "$(a 32)" >"$tmp/haproxy-a.cfg"
haproxy_conf b 1 "$(a 31)" "$(a 32)" >"$tmp/haproxy-b.cfg"
haproxy_conf a 0 "$(a 41)" "$(a 42)" >"$tmp/plain-a.cfg"
haproxy_conf b 0 "$(a 41)" "$(a 42)" >"$tmp/plain-b.cfg"
for n in haproxy_a haproxy_b plain_a plain_b; do
  start "$n" haproxy -db -f "$tmp/${n/_/-}.cfg"
done
for port in 8080 5201 7000; do
  wait_tcp "$(a 32)" "$port" 10 haproxy_a
  wait_tcp "$(a 31)" "$port" 10 haproxy_b
  wait_tcp "$(a 42)" "$port" 10 plain_a
  wait_tcp "$(a 41)" "$port" 10 plain_b
done
SIDES[haproxy]="${PID[haproxy_b]},${PID[haproxy_a]}"
SIDES[plain]="${PID[plain_b]},${PID[plain_a]}"

# --- a quiet machine: everything here shares 2 cores with whatever else runs ----
# busy_pct: percentage of all CPUs busy over one second (from /proc/stat).
busy_pct() {
  local a b
  a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
  sleep 1
  b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); d = y[2] - x[2]; printf "%d", (d > 0 ? 100 * (y[1] - x[1]) / d : 0) }'
}
QUIET_WAIT=${QUIET_WAIT:-300}        # seconds to wait for other work on the machine to stop
for ((i = 0; i < QUIET_WAIT / 5; i++)); do
  b=$(busy_pct)
  [ "$b" -le 10 ] && break
  [ "$i" = 0 ] && echo "== waiting (at most ${QUIET_WAIT}s) for a quiet machine: CPU ${b}% busy with work not ours"
  sleep 4
done
b=$(busy_pct)
echo "== CPU ${b}% busy before measuring (our processes idle)"
[ "$b" -gt 10 ] && echo "   !! the machine is not quiet: figures below are disturbed by other work"

# settle: before each group of measurements, wait (at most 60 s) until the
# machine is quiet again; say so when it is not.
settle() {
  local b i
  for ((i = 0; i < 30; i++)); do
    b=$(busy_pct)
    [ "$b" -le 10 ] && return 0
    sleep 1
  done
  echo "   !! CPU still ${b}% busy before this group: its figures are disturbed by other work"
}

results="$tmp/results.tsv"
: >"$results"
put() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$results"; }
# CPU time (clock ticks, user + system) of the relay processes of a path; 0 for direct.
ticks() {
  local pids=${SIDES[$1]:-} pid sum=0 f
  for pid in ${pids//,/ }; do
    f=$(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
    sum=$((sum + f))
  done
  echo "$sum"
}
HZ=$(getconf CLK_TCK)
put_cpu() { # PATH KEY TICKS_BEFORE
  put "$1" "cpu_$2" "{\"cpu_s\": $(awk -v a="$3" -v b="$(ticks "$1")" -v hz="$HZ" 'BEGIN { printf "%.3f", (b - a) / hz }')}"
}

# --- correctness: the same bytes through every path ---------------------------
part integrity && echo "== integrity: 32 MiB download through each path, SHA-256 against the file"
part integrity && want=$(sha256sum <"$tmp/www/big.bin" | cut -d' ' -f1)
part integrity && for p in "${PATHS[@]}"; do
  got=$(timeout 60 curl -s --max-time 50 "http://${HTTP[$p]}/big.bin" | sha256sum | cut -d' ' -f1) || got=error
  if [ "$got" = "$want" ]; then ok=true; else ok=false; fi
  echo "   $p: $([ "$ok" = true ] && echo ok || echo "MISMATCH ($got)")"
  put "$p" integrity "{\"ok\": $ok}"
done

# --- idle flows and RSS (first, while the relays are fresh) ---------------------
part idle && settle && echo "== idle flows: open, prove with a 1-byte echo, hold ${SETTLE:-3} s, read VmRSS of both sides"
part idle && for p in "${PATHS[@]}"; do
  [ "$p" = direct ] && continue
  n=$PEER_FLOWS
  [ "$p" = fedgate ] && n=$FLOWS
  # one flow first, so the QUIC link and TLS session caches exist in the baseline
  timeout 10 python3 "$tool" connects "${ECHO[$p]}" 3 >/dev/null || true
  sleep 1
  out=$(DEADLINE=150 timeout 200 python3 "$tool" idle "${ECHO[$p]}" "$n" "${SIDES[$p]}") || out='{"flows": 0}'
  echo "   $p: $out"
  put "$p" idle "$out"
  sleep 2
done

# --- bulk throughput --------------------------------------------------------------
part bulk && settle && echo "== bulk: iperf3 -t $DURATION, -P 1 and -P 8 (client -> origin)"
part bulk && for p in "${PATHS[@]}"; do
  for par in 1 8; do
    host=${IPERF[$p]%:*} port=${IPERF[$p]#*:}
    t0=$(ticks "$p")
    timeout "$RUN_TIMEOUT" iperf3 -c "$host" -p "$port" -t "$DURATION" -P "$par" -J >"$tmp/iperf-$p-$par.json" 2>&1 || true
    put_cpu "$p" "bulk_p$par" "$t0"
    out=$(python3 "$tool" iperf "$tmp/iperf-$p-$par.json")
    echo "   $p -P $par: $out"
    put "$p" "bulk_p$par" "$out"
    sleep 1
  done
done

# --- HTTP: keep-alive and a new connection per request --------------------------
part http && echo "== HTTP: wrk -t2 -d${DURATION}s --latency: -c32 keep-alive; Connection: close at -c$NC_CONNS (nc) and -c$NC_LOW (nclow)"
part http && for ((round = 1; round <= ROUNDS; round++)); do for mode in ka nc nclow; do
  settle
  for p in "${PATHS[@]}"; do
    hdr=()
    conns=32
    [ "$mode" = nc ] && hdr=(-H 'Connection: close') && conns=$NC_CONNS
    [ "$mode" = nclow ] && hdr=(-H 'Connection: close') && conns=$NC_LOW
    t0=$(ticks "$p")
    timeout "$RUN_TIMEOUT" wrk -t2 -c"$conns" -d"${DURATION}s" --latency "${hdr[@]}" "http://${HTTP[$p]}/hello.txt" >"$tmp/wrk-$mode-$p.txt" 2>&1 || true
    put_cpu "$p" "wrk_$mode" "$t0"
    out=$(python3 "$tool" wrk "$tmp/wrk-$mode-$p.txt")
    echo "   $mode $p${round_tag:+ $round_tag$round}: $out"
    put "$p" "wrk_$mode" "$out"
    sleep 2
  done
done; done

# --- connection setup -------------------------------------------------------------
part connects && settle && echo "== connection setup: $CONNECTS x (connect, 1-byte echo, close), one at a time"
part connects && for p in "${PATHS[@]}"; do
  out=$(DEADLINE=60 timeout 90 python3 "$tool" connects "${ECHO[$p]}" "$CONNECTS") || out='{"n": 0}'
  echo "   $p: $out"
  put "$p" connects "$out"
done

# --- flows left open: every client is gone, so every edge should be at 0 ------
sleep 2
for p in fedgate:1:2 fedgate-tcp:3:4; do
  IFS=: read -r name ah hh <<<"$p"
  ga=$(curl -s --max-time 5 "http://$(a "$ah"):9100/metrics" | awk '$1 == "fedgate_active_flows" { print $2 }')
  gh=$(curl -s --max-time 5 "http://$(a "$hh"):9100/metrics" | awk '$1 == "fedgate_active_flows" { print $2 }')
  put "$name" leftover "{\"visited\": ${ga:-null}, \"home\": ${gh:-null}}"
done

# --- the edges' own view --------------------------------------------------------
echo "== the edges after the run: metrics, logs, audit chains"
for e in away:1 home:2 away-tcp:3 home-tcp:4; do
  curl -s --max-time 5 "http://$(a "${e#*:}"):9100/metrics" | grep -E '^fedgate_(flows_total|denials_total|active_flows|peer_link|handshake)' \
    | sed "s/^/   ${e%%:*}: /" || true
done
for n in edge_away edge_home edge_away-tcp edge_home-tcp; do
  if [ -s "$tmp/$n.log" ]; then
    echo "   $n log (FEDGATE_LOG=$FEDGATE_LOG), $(wc -l <"$tmp/$n.log") lines, the last:"
    tail -n 3 "$tmp/$n.log" | cut -c1-300 | sed 's/^/     /'
  fi
  kill -0 "${PID[$n]}" 2>/dev/null || echo "!! $n is no longer running"
done
for e in away home away-tcp home-tcp; do
  # Rotated files (FILE.FIRST-LAST, past 256 MiB) first, oldest first.
  mapfile -t rotated < <(ls "$tmp/$e.audit.jsonl".0* 2>/dev/null | sort)
  "$edge_bin" audit verify "${rotated[@]}" "$tmp/$e.audit.jsonl" | sed "s/^/   $e audit: /" || true
done

echo
rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$root" diff --quiet HEAD -- proxy federation 2>/dev/null || rev="$rev+changes"
echo "== figures ($(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ); fedgate-edge built from $rev)"
python3 "$tool" report "$results"
