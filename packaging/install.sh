#!/bin/sh
# Installs jitgate as a systemd service by hand, on a box without Debian packages:
# the same files, modes and user as the .deb (`cargo deb`). The service is installed
# but neither enabled nor started: configure it first.
#
# Usage (as root, from the source tree, after `cargo build --release`):
#   packaging/install.sh [BINARY]          # BINARY defaults to target/release/jitgate
# DESTDIR=/some/dir stages the files there instead (no user, no systemctl): for
# building other packages, and for the tests.
set -eu
cd "$(dirname "$0")/.."
bin=${1:-target/release/jitgate}
dest=${DESTDIR:-}
if [ ! -x "$bin" ]; then
    echo "install.sh: no jitgate binary at $bin: run 'cargo build --release' or name one" >&2
    exit 2
fi
if [ -z "$dest" ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run as root (or set DESTDIR to stage the files)" >&2
    exit 2
fi

assets=$(mktemp -d)
trap 'rm -rf "$assets"' EXIT
packaging/assets.sh "$bin" "$assets"

install -D -m 0755 "$bin" "$dest/usr/bin/jitgate"
install -D -m 0644 packaging/jitgate.service "$dest/usr/lib/systemd/system/jitgate.service"
install -D -m 0644 packaging/jitgate.sysusers "$dest/usr/lib/sysusers.d/jitgate.conf"
install -D -m 0644 "$assets/jitgate.1.gz" "$dest/usr/share/man/man1/jitgate.1.gz"
install -D -m 0644 "$assets/jitgate.bash" "$dest/usr/share/bash-completion/completions/jitgate"
install -D -m 0644 "$assets/_jitgate" "$dest/usr/share/zsh/site-functions/_jitgate"
install -D -m 0644 "$assets/jitgate.fish" "$dest/usr/share/fish/vendor_completions.d/jitgate.fish"
install -D -m 0644 packaging/jitgate.example.toml "$dest/usr/share/doc/jitgate/jitgate.example.toml"
# Never overwrite a configured server's file.
config="$dest/etc/jitgate/jitgate.toml"
if [ ! -e "$config" ]; then
    install -D -m 0640 packaging/jitgate.example.toml "$config"
fi

if [ -n "$dest" ]; then
    echo "staged under $dest"
    exit 0
fi

# The service user: systemd-sysusers where there is one, useradd otherwise.
if ! id jitgate >/dev/null 2>&1; then
    if command -v systemd-sysusers >/dev/null 2>&1; then
        systemd-sysusers jitgate.conf
    else
        useradd --system --user-group --home-dir /var/lib/jitgate --no-create-home \
            --shell /usr/sbin/nologin --comment "jitgate just-in-time access" jitgate
    fi
fi
# Root writes the config; the service's group reads it; nobody else.
if [ "$(stat -c %G "$config")" = root ]; then
    chgrp jitgate "$config"
    chmod 0640 "$config"
fi
systemctl daemon-reload 2>/dev/null || true
cat <<MSG
jitgate is installed but not started. Next:
  1. edit /etc/jitgate/jitgate.toml (listen, public_url, [backup])
  2. jitgate config check /etc/jitgate/jitgate.toml
  3. systemctl enable --now jitgate
  4. journalctl -u jitgate   (the first admin's credentials are in /var/lib/jitgate/initial-admin.json)
MSG
