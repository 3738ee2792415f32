#!/usr/bin/env bash
# The whole test suite of multistream, on a fresh machine or an old one.
#
# Installs what the tests need and is missing: Debian's Chromium (the browser test drives it),
# playwright-core from npm, and Debian's PostgreSQL (started here; the control plane's tests run
# against it as well as SQLite). The Rust toolchain and its wasm32-wasip2 target come from
# rust-toolchain.toml through rustup, which cargo invokes by itself. Then it builds the node and
# runs every test: unit tests, the SFU core in virtual time, WHIP/WHEP against a real node
# process, the class log and its replication (simulated and between real edge processes), the
# plugins against their harness, and the classroom in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

if ! command -v chromium >/dev/null 2>&1; then
  say "installing Chromium from Debian (the browser test needs it)"
  apt_install chromium
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  say "installing Node.js and npm from Debian (they drive the browser)"
  apt_install nodejs npm
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  say "installing PostgreSQL from Debian (the control plane's tests run against it too)"
  apt_install postgresql
fi

say "starting PostgreSQL for the control plane's tests"
# Debian's package makes a cluster but does not start it here. The tests connect over TCP as a
# role that may create databases: each run makes its own databases and drops them.
pg_version=$(pg_lsclusters --no-header | awk '$2 == "main" { print $1 }' | sort -V | tail -1)
if [ -z "$pg_version" ]; then
  echo "no PostgreSQL cluster 'main' was found (pg_lsclusters)" >&2
  exit 1
fi
pg_field() { pg_lsclusters --no-header | awk -v v="$pg_version" -v f="$1" '$1 == v && $2 == "main" { print $f }'; }
if [ "$(pg_field 4)" != online ]; then
  as_root pg_ctlcluster "$pg_version" main start
fi
pg_port=$(pg_field 3)
pg_sql() { as_root su postgres -c "cd / && psql -qtAc \"$1\""; }
if [ "$(pg_sql "select 1 from pg_roles where rolname = 'multistream'")" != 1 ]; then
  pg_sql "create role multistream login createdb password 'multistream-test'"
fi
if [ "$(pg_sql "select 1 from pg_database where datname = 'multistream'")" != 1 ]; then
  pg_sql "create database multistream owner multistream"
fi
export MULTISTREAM_TEST_POSTGRES="postgres://multistream:multistream-test@127.0.0.1:${pg_port}/multistream"

say "installing playwright-core (no browser download: it drives Debian's Chromium)"
(cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)

say "building the node"
cargo build --workspace --bins --locked

say "building the plugins for wasm32-wasip2"
# rustup installs the target from rust-toolchain.toml with the toolchain; a toolchain installed
# before the file named the target lacks it, so make sure.
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
# The same polls code under a higher version, for the hot-upgrade test; built first, and kept
# under its own name, because the plain build below writes the same file.
cargo build --locked --release --target wasm32-wasip2 -p multistream-plugin-polls --features next-version
wasm_out=${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release
cp "$wasm_out/multistream_plugin_polls.wasm" "$wasm_out/multistream_plugin_polls_next.wasm"
cargo build --locked --release --target wasm32-wasip2 -p multistream-plugin-polls -p multistream-plugin-qa -p multistream-plugin-hostile

say "running the tests"
# Doc tests are skipped: the crates have none, and empty runs would end the log with "0 passed".
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked --lib --bins --tests 2>&1 | tee "$log"
# One closing line for the whole suite.
awk '/^test result:/ { passed += $4; failed += $6 } END { printf "\ntests: %d passed, %d failed\n", passed, failed }' "$log"
