#!/usr/bin/env bash
# A short run of every fuzz target: CI's fuzz tier. Each target runs
# FUZZ_SECS seconds (20) from its seeds (the example configs, a snapshot of
# the example region, its certificates, the seeds in seeds/) plus
# whatever corpus/ holds from earlier runs; a crash stops the run with the
# input saved under artifacts/TARGET/. Needs cargo-fuzz (installed if
# missing) and the stable toolchain's nightly features (RUSTC_BOOTSTRAP).
set -euo pipefail
cd "$(dirname "$0")"
secs=${FUZZ_SECS:-20}
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked cargo-fuzz

# Seeds: what the parsers read in use.
seed=$(mktemp -d)
trap 'rm -rf "$seed"' EXIT
mkdir -p corpus/{config,snapshot,signed,peer_cert,wire,audit_chain,socks5,dns_fast}
cp ../configs/south-east/*.yaml ../configs/examples/broken/*.yaml corpus/config/
cp seeds/audit_chain/* corpus/audit_chain/
cp seeds/socks5/* corpus/socks5/
cp seeds/dns_fast/* corpus/dns_fast/
# fedctl as the tests built it, or built now.
fedctl() {
  if [ -x ../target/debug/fedctl ]; then
    ../target/debug/fedctl "$@"
  else
    (cd .. && cargo run -q --locked -p control-plane --bin fedctl -- "$@")
  fi >"$seed/fedctl.log" 2>&1 || { cat "$seed/fedctl.log"; return 1; }
}
fedctl snapshot --edge dpft/core "$PWD/../configs/south-east" --out "$seed/snapshot.json"
cp "$seed/snapshot.json" corpus/snapshot/dpft-core.json
cp "$seed/snapshot.json" corpus/signed/dpft-core.json
fedctl certs dev --config "$PWD/../configs/south-east" --out "$seed/certs"
for pem in "$seed"/certs/edges/*.pem; do
  openssl x509 -in "$pem" -outform der -out "corpus/peer_cert/$(basename "$pem" .pem).der"
done

targets=$(cargo fuzz list)
# No sanitizer: the code under test is safe Rust (`unsafe_code` is forbidden
# in every crate); AddressSanitizer would look only at dependencies' unsafe
# code and C, and about doubles the build (proxy's dependencies included).
cargo fuzz build -s none
for t in $targets; do
  echo "== fuzz $t (${secs} s)"
  if ! cargo fuzz run -s none "$t" "corpus/$t" -- -max_total_time="$secs" -seed=1 \
    -max_len=65536 -print_final_stats=1 >"$seed/$t.log" 2>&1; then
    grep -v '^"' "$seed/$t.log" | tail -40
    echo "fuzz $t failed (a crash is saved under fuzz/artifacts/$t/)"
    exit 1
  fi
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|^#[0-9]+ *DONE' "$seed/$t.log"
done
