#!/usr/bin/env bash
# Runs every test of jitgate: unit tests beside the code, and the integration tests
# that drive the real binary over HTTPS. Installs what the tests need that cargo does
# not bring (nothing yet beyond a Rust toolchain; browser and PostgreSQL tests will
# add their packages here). Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
if ! need cargo; then
    echo "scripts/test.sh: cargo is missing: install a Rust toolchain (https://rustup.rs or the distribution's rustc/cargo)" >&2
    exit 2
fi

cargo build --locked --all-targets
cargo test --locked "$@"
