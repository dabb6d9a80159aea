#!/usr/bin/env bash
# Runs every test of jitgate: unit tests beside the code, and the integration tests
# that drive the real binary over HTTPS, a real PostgreSQL behind the gateway, and a
# real browser for the UI. Installs what the tests need that cargo does not bring
# (Debian's postgresql, chromium; npm packages) and starts the throwaway services.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
if ! need cargo; then
    echo "scripts/test.sh: cargo is missing: install a Rust toolchain (https://rustup.rs or the distribution's rustc/cargo)" >&2
    exit 2
fi

# Services the tests use, stopped on exit whatever happens.
cleanups=()
cleanup() { for c in "${cleanups[@]}"; do eval "$c" || true; done; }
trap cleanup EXIT

# PostgreSQL for the gateway tests: a throwaway cluster on a free loopback port.
pg_dir=$(mktemp -d /tmp/jitgate-pg.XXXXXX)
cleanups+=("scripts/test-postgres.sh stop '$pg_dir'")
eval "$(scripts/test-postgres.sh start "$pg_dir")"

# The systemd unit, install.sh and the Debian package (release build, cargo-deb).
scripts/test-packaging.sh

cargo build --locked --all-targets
cargo test --locked "$@"

# ---- Web UI: browser tests -----------------------------------------------------------
# Browser tests: headless Debian Chromium driven by playwright-core from npm, against
# the debug binary built above (see README.md, "Web UI"). Nothing is
# fetched but Debian's chromium (when missing) and the locked npm packages.
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "scripts/test.sh: /usr/bin/chromium is missing: apt-get install chromium (as root)" >&2
        exit 2
    fi
    echo "installing chromium from Debian's packages" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
fi
if ! need node || ! need npm; then
    echo "scripts/test.sh: node and npm are missing: install Node.js 20 or later" >&2
    exit 2
fi
(cd tests/ui && npm ci --no-audit --no-fund --loglevel=error && npm test)
# ---- end of the Web UI block ---------------------------------------------------------
