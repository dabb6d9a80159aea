#!/bin/sh
# Generates the man page and shell completions from the clap definitions of a built
# jitgate binary, for the Debian package (`cargo deb`) and packaging/install.sh.
# Usage: packaging/assets.sh BINARY OUTDIR
set -eu
bin=${1:?usage: packaging/assets.sh BINARY OUTDIR}
out=${2:?usage: packaging/assets.sh BINARY OUTDIR}
mkdir -p "$out"
# gzip -n: no name or time stamp inside, so the same binary gives the same bytes.
"$bin" man | gzip -9n > "$out/jitgate.1.gz"
"$bin" completions bash > "$out/jitgate.bash"
"$bin" completions zsh > "$out/_jitgate"
"$bin" completions fish > "$out/jitgate.fish"
