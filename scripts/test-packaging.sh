#!/usr/bin/env bash
# Checks what an operator installs: the systemd unit passes `systemd-analyze verify`,
# packaging/install.sh stages the expected files and modes, and `cargo deb` builds a
# package with the expected file list, conffile and maintainer scripts (installed,
# never started). Installs systemd-analyze (Debian's systemd) and cargo-deb if missing.
# With JITGATE_TEST_DPKG=1 (set by .ci/run, on a throwaway machine: it changes the
# system) the package is also installed with dpkg, started as the service would start
# it (as user jitgate, on /var/lib/jitgate; no systemd is PID 1 here), asked for
# /healthz, stopped, and purged.
# Usage: scripts/test-packaging.sh   (called by scripts/test.sh; builds --release)
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
fail() { echo "test-packaging: $*" >&2; exit 1; }
work=$(mktemp -d /tmp/jitgate-pkg.XXXXXX)
trap 'rm -rf "$work"' EXIT

cargo build --locked --release
bin=target/release/jitgate

# 1. The unit. verify wants ExecStart's binary to exist: check a copy that points at
#    the one just built. Warnings ("ignoring") exit 0, so any output is a failure.
if ! need systemd-analyze; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi
sed "s|/usr/bin/jitgate|$PWD/$bin|" packaging/jitgate.service > "$work/jitgate.service"
out=$(systemd-analyze verify --man=no "$work/jitgate.service" 2>&1) || fail "systemd-analyze verify failed: $out"
[ -z "$out" ] || fail "systemd-analyze verify warned: $out"
for key in Type=notify ProtectSystem=strict NoNewPrivileges=yes SystemCallFilter=@system-service \
    MemoryDenyWriteExecute=yes StateDirectory=jitgate ConfigurationDirectory=jitgate; do
    grep -qx "$key" packaging/jitgate.service || fail "the unit lacks $key"
done
echo "test-packaging: systemd unit verified"

# 2. The by-hand install, staged.
DESTDIR="$work/stage" packaging/install.sh "$bin" >/dev/null
expected_stage="etc/jitgate/jitgate.toml 640
usr/bin/jitgate 755
usr/lib/systemd/system/jitgate.service 644
usr/lib/sysusers.d/jitgate.conf 644
usr/share/bash-completion/completions/jitgate 644
usr/share/doc/jitgate/jitgate.example.toml 644
usr/share/fish/vendor_completions.d/jitgate.fish 644
usr/share/man/man1/jitgate.1.gz 644
usr/share/zsh/site-functions/_jitgate 644"
got=$(cd "$work/stage" && find . -type f -printf '%P %m\n' | sort)
[ "$got" = "$expected_stage" ] || fail "install.sh staged:
$got
expected:
$expected_stage"
zcat "$work/stage/usr/share/man/man1/jitgate.1.gz" | grep -q '^.TH jitgate' || fail "the man page is not roff"
echo "test-packaging: install.sh staged the expected files"

# 3. The Debian package.
if ! need cargo-deb; then
    cargo install --locked cargo-deb --version '^3.8'
fi
packaging/assets.sh "$bin" target/deb-assets
# With dbgsym, --output is a directory: the package and its -dbgsym.ddeb.
mkdir "$work/deb"
cargo deb --no-build --output "$work/deb/" >/dev/null
deb=$(ls "$work"/deb/jitgate_*.deb)
expected_deb="./etc/jitgate/jitgate.toml -rw-r-----
./usr/bin/jitgate -rwxr-xr-x
./usr/lib/systemd/system/jitgate.service -rw-r--r--
./usr/lib/sysusers.d/jitgate.conf -rw-r--r--
./usr/share/bash-completion/completions/jitgate -rw-r--r--
./usr/share/doc/jitgate/README.md -rw-r--r--
./usr/share/doc/jitgate/copyright -rw-r--r--
./usr/share/doc/jitgate/jitgate.example.toml -rw-r--r--
./usr/share/fish/vendor_completions.d/jitgate.fish -rw-r--r--
./usr/share/man/man1/jitgate.1.gz -rw-r--r--
./usr/share/zsh/vendor-completions/_jitgate -rw-r--r--"
got=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $6, $1}' | sort)
[ "$got" = "$expected_deb" ] || fail "the package holds:
$got
expected:
$expected_deb"
dpkg-deb -e "$deb" "$work/control"
grep -qx /etc/jitgate/jitgate.toml "$work/control/conffiles" || fail "the config is not a conffile"
grep -q 'systemd-sysusers' "$work/control/postinst" || fail "postinst does not create the jitgate user"
grep -q 'chgrp jitgate' "$work/control/postinst" || fail "postinst does not give the config to the jitgate group"
# (try-restart on upgrade is fine: it restarts a running service, never starts one.)
if grep -v '^ *echo' "$work/control/postinst" | grep -Eq 'deb-systemd-invoke (start|restart)|systemctl (start|enable)'; then
    fail "postinst starts or enables the service; it must wait until configured"
fi
echo "test-packaging: the Debian package holds the expected files"

# 4. The package installed for real (CI only: see the top).
if [ "${JITGATE_TEST_DPKG:-}" = 1 ]; then
    dpkg -s jitgate >/dev/null 2>&1 && fail "jitgate is installed already: not touching it"
    [ -e /var/lib/jitgate ] && fail "/var/lib/jitgate exists (a jitgate installed by hand?): not touching it"
    need curl || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null; }
    pid=""
    # Set before the install, so that a failure anywhere after it is undone; each step
    # may fail (nothing to kill, nothing installed) without skipping the next.
    trap '{ [ -z "$pid" ] || kill "$pid"; } 2>/dev/null || true; dpkg --purge jitgate >/dev/null 2>&1 || true; rm -rf /var/lib/jitgate "$work" || true' EXIT
    dpkg -i "$deb" >/dev/null
    id jitgate >/dev/null 2>&1 || fail "dpkg -i did not create the jitgate user"
    perms=$(stat -c '%U:%G %a' /etc/jitgate/jitgate.toml)
    [ "$perms" = "root:jitgate 640" ] || fail "/etc/jitgate/jitgate.toml is $perms, not root:jitgate 640"
    /usr/bin/jitgate config check /etc/jitgate/jitgate.toml >/dev/null || fail "config check of the packaged config failed"
    # What systemd's StateDirectory=jitgate (0700) would make.
    install -d -o jitgate -g jitgate -m 0700 /var/lib/jitgate
    log="$work/service.log"
    # setpriv execs the server itself (runuser would sit between, in a PAM session).
    setpriv --reuid=jitgate --regid=jitgate --init-groups -- /usr/bin/jitgate serve --config /etc/jitgate/jitgate.toml --listen 127.0.0.1:0 >"$log" 2>&1 &
    pid=$!
    url=""
    for _ in $(seq 100); do
        url=$(grep -o 'listening on https://[0-9.:]*' "$log" | head -1 | sed 's/listening on //') || true
        [ -n "$url" ] && break
        kill -0 "$pid" 2>/dev/null || fail "the packaged server exited: $(cat "$log")"
        sleep 0.1
    done
    [ -n "$url" ] || fail "the packaged server did not listen: $(cat "$log")"
    curl -fsk "$url/healthz" >/dev/null || fail "GET /healthz of the packaged server failed"
    [ "$(stat -c '%U %a' /var/lib/jitgate/jitgate.db)" = "jitgate 600" ] || fail "the database is not the service user's, 0600"
    kill -TERM "$pid"
    wait "$pid" || fail "the packaged server did not stop cleanly on SIGTERM: $(tail -5 "$log")"
    pid=""
    dpkg --purge jitgate >/dev/null
    [ ! -e /usr/bin/jitgate ] || fail "dpkg --purge left /usr/bin/jitgate"
    echo "test-packaging: the package installs with dpkg, serves as user jitgate, and purges"
fi
