#!/bin/bash
# tools/arm64-check.sh: install.sh on Debian arm64 (Bookworm and Trixie) under qemu, then
# start the daemon and check its page. Not part of `make test`: it takes minutes.
#
#   sudo tools/arm64-check.sh [RELEASE...]     (default: bookworm trixie)
#
# For each release: builds a minimal arm64 root with mmdebstrap (variant "apt":
# Essential packages, apt and python3 — no passwd, no systemd, as on Trixie
# minimal), cached in $CACHE (ARM64_CHECK_CACHE); copies this checkout (tracked and untracked files
# git does not ignore) into it; chroots in and runs
# `install.sh --extras pi,systemd --no-start`; starts
# `/opt/pillowd/bin/pillowd run --config /etc/pillowd/config.toml` as the
# pillowd user (a chroot has no systemd as PID 1); checks /healthz, /api/state,
# the page and every script it loads (HTTP 200, the vendored Socket.IO client
# included). Prints each step's time, and a summary line per release.
#
# Needs root, qemu-user-static with binfmt_misc (installed and registered here
# when missing), mmdebstrap, and the network to the Debian mirror this machine's
# apt uses (read from /etc/apt/sources.list*), to PyPI, and to the npm
# registry (npm's configured one, read at run time, or $npm_config_registry).

set -euo pipefail
umask 022

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly SRC
readonly CACHE=${ARM64_CHECK_CACHE:-/var/tmp/pillowd-arm64}
ROOTS_ONLY=0
[[ ${1:-} != --roots ]] || { ROOTS_ONLY=1; shift; }  # only build and cache the roots
RELEASES=("$@")
((${#RELEASES[@]})) || RELEASES=(bookworm trixie)

say() { printf '%s\n' "arm64-check: $*"; }
die() { printf '%s\n' "arm64-check: error: $*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "must run as root (mmdebstrap, chroot, mounts)"

# Seconds since $1 (from date +%s.%N), one decimal.
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

tools() {
    local missing=() tool
    for tool in mmdebstrap arch-test qemu-aarch64-static update-binfmts; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    if ((${#missing[@]})); then
        say "installing mmdebstrap arch-test qemu-user-static binfmt-support (missing: ${missing[*]})"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            mmdebstrap arch-test qemu-user-static binfmt-support >/dev/null
    fi
    # arm64 binaries run through qemu by binfmt_misc; in a container it may be unmounted.
    if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc \
            || die "cannot mount binfmt_misc: qemu cannot run arm64 binaries here"
    fi
    [[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] || update-binfmts --enable qemu-aarch64 \
        || die "cannot register qemu-aarch64 with binfmt_misc"
}

# The Debian mirror this machine's apt uses (deb822 or one-line format); never
# written into the repository.
mirror() {
    local found
    found=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '{ print $2 }' | grep -v -- '-security' | head -n 1)
    [[ -n $found ]] || found=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk '{ for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' \
        | grep -v -- '-security' | head -n 1)
    [[ -n $found ]] || die "no Debian mirror in /etc/apt/sources.list*"
    printf '%s\n' "${found%/}"
}

npm_registry() {
    if [[ -n ${npm_config_registry:-} ]]; then
        printf '%s\n' "$npm_config_registry"
    elif command -v npm >/dev/null; then
        npm config get registry
    else
        die "set npm_config_registry: install.sh fetches the page's Socket.IO client from it"
    fi
}

build_root() {
    local release=$1 root=$CACHE/$1-arm64
    if [[ -x $root/usr/bin/python3 ]]; then
        say "$release: root from cache $root"
        return
    fi
    mkdir -p "$CACHE"
    rm -rf -- "$root.new"
    local start
    start=$(date +%s.%N)
    say "$release: building an arm64 root with mmdebstrap"
    mmdebstrap --quiet --arch=arm64 --variant=apt --include=python3 \
        "$release" "$root.new" "$MIRROR" || { rm -rf -- "$root.new"; die "$release: mmdebstrap failed"; }
    mv -- "$root.new" "$root"
    say "$release: root built in $(since "$start") s ($(du -sh "$root" | cut -f1))"
}

# Installed-Size of every installed package in root $1, in MB, read from dpkg's
# status file on the host (no emulation needed).
installed_mb() {
    awk '/^Status:/ { ok = ($4 == "installed") } /^Installed-Size:/ { if (ok) s += $2 }
         END { printf "%d\n", s / 1024 }' "$1/var/lib/dpkg/status"
}

MOUNTED=()
cleanup() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        umount -l "${MOUNTED[i]}" 2>/dev/null || true
    done
    MOUNTED=()
    [[ -z ${DAEMON_PID:-} ]] || kill "$DAEMON_PID" 2>/dev/null || true
}
trap cleanup EXIT

bind() {
    mkdir -p "$2"
    mount "${@:3}" "$1" "$2"
    MOUNTED+=("$2")
}

check_release() {
    local release=$1 dir
    build_root "$release"
    dir=$(mktemp -d "$CACHE/$release.XXXXXX")
    cp -a "$CACHE/$release-arm64/." "$dir/"
    bind proc "$dir/proc" -t proc
    bind /sys "$dir/sys" --rbind
    bind /dev "$dir/dev" --rbind
    cp /etc/resolv.conf "$dir/etc/resolv.conf"
    # Where this machine trusts extra roots through $SSL_CERT_FILE (a TLS proxy in
    # front of PyPI), the root is given the same bundle; on a Pi, install.sh's
    # ca-certificates is all pip and urllib need.
    local tls=()
    if [[ -n ${SSL_CERT_FILE:-} && -r $SSL_CERT_FILE ]]; then
        cp "$SSL_CERT_FILE" "$dir/root/host-ca.crt"
        tls=(SSL_CERT_FILE=/root/host-ca.crt PIP_CERT=/root/host-ca.crt)
    fi
    mkdir -p "$dir/root/pillowd"
    git -C "$SRC" ls-files -z --cached --others --exclude-standard \
        | (cd "$SRC" && xargs -0 tar -cf - --no-recursion) | tar -C "$dir/root/pillowd" -xf -
    local python_version
    python_version=$(chroot "$dir" python3 -c 'import platform; print(platform.python_version())')
    say "$release: $(chroot "$dir" uname -m), Python $python_version"

    local debs_before
    debs_before=$(installed_mb "$dir")
    local start
    start=$(date +%s.%N)
    if ! chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
            LANG=C.UTF-8 npm_config_registry="$REGISTRY" "${tls[@]}" \
            bash /root/pillowd/install.sh --extras pi,systemd --no-start \
            >"$dir.install.log" 2>&1; then
        tail -n 30 "$dir.install.log" >&2
        die "$release: install.sh failed (log: $dir.install.log)"
    fi
    local install_time
    install_time=$(since "$start")
    sed 's/^/    /' "$dir.install.log"
    say "$release: install.sh took $install_time s"
    local venv_size debs
    venv_size=$(du -sh "$dir/opt/pillowd" | cut -f1)
    # apt keeps what it downloaded in the root's cache (the root started empty).
    local fetched
    fetched=$(find "$dir/var/cache/apt/archives" -name '*.deb' -printf '%s\n' \
        | awk '{ n++; s += $1 } END { printf "%d packages, %d MB of .debs", n, s / 1048576 }')
    debs="$(($(installed_mb "$dir") - debs_before)) MB installed ($fetched)"
    say "$release: /opt/pillowd is $venv_size; Debian packages install.sh added: $debs ($(installed_mb "$dir") MB in the root)"

    # A free port on this machine (the chroot shares its network).
    local port
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    sed -i "s/^port = .*/port = $port/; s/^host = .*/host = \"127.0.0.1\"/" "$dir/etc/pillowd/config.toml"
    start=$(date +%s.%N)
    # setpriv execs pillowd itself, so the SIGTERM below reaches it (runuser would
    # keep a session process in between that kills it instead).
    chroot "$dir" /usr/bin/setpriv --reuid=pillowd --regid=pillowd --init-groups \
        /usr/bin/env -i HOME=/var/lib/pillowd \
        PATH=/usr/bin:/bin PYTHONUNBUFFERED=1 GPIOZERO_PIN_FACTORY=lgpio \
        /opt/pillowd/bin/pillowd run --config /etc/pillowd/config.toml \
        >"$dir.daemon.log" 2>&1 &
    DAEMON_PID=$!
    local url="http://127.0.0.1:$port"
    until grep -q "status page at" "$dir.daemon.log" 2>/dev/null; do
        kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$dir.daemon.log" >&2; die "$release: pillowd exited"; }
        (($(date +%s) - ${start%.*} < 180)) || die "$release: pillowd printed no address in 180 s"
        sleep 0.2
    done
    local ready_time
    ready_time=$(since "$start")
    say "$release: pillowd serving after $ready_time s"
    # The checks run in the root's Python, as a phone would load the page.
    if ! chroot "$dir" /opt/pillowd/bin/python - "$url" <<'EOF'; then
import json, re, sys, urllib.request
url = sys.argv[1]
def get(path):
    with urllib.request.urlopen(url + path, timeout=30) as r:
        return r.status, r.read()
status, body = get("/healthz")
print(f"    /healthz {status} {body.decode().strip()}")
status, body = get("/api/state")
state = json.loads(body)
print(f"    /api/state {status}: scene {state['scene']}, {state['leds']['count']} LEDs, queue {state['queue']['backend']}")
assert state["scene"] and state["queue"]["online"], state
status, page = get("/")
scripts = re.findall(r'<script src="([^"]+)"', page.decode())
assert any("vendor/socket.io.min.js" in s for s in scripts), scripts
for src in scripts:
    status, body = get(src)
    print(f"    {src} {status} ({len(body)} bytes)")
    assert status == 200 and len(body) > 1000
EOF
        cat "$dir.daemon.log" >&2
        die "$release: the page's checks failed"
    fi
    kill "$DAEMON_PID"
    wait "$DAEMON_PID" 2>/dev/null || true
    DAEMON_PID=""
    sed 's/^/    daemon: /' "$dir.daemon.log" | head -n 20
    cleanup
    rm -rf -- "$dir" "$dir.install.log" "$dir.daemon.log"  # kept only when a check fails
    SUMMARY+=("$release arm64, Python $python_version: install.sh $install_time s, pillowd serving after $ready_time s, /opt/pillowd $venv_size, Debian packages added $debs: healthz, state, page and scripts OK")
}

tools
MIRROR=$(mirror)
REGISTRY=$(npm_registry)
SUMMARY=()
if ((ROOTS_ONLY)); then
    for release in "${RELEASES[@]}"; do build_root "$release"; done
    exit 0
fi
for release in "${RELEASES[@]}"; do
    total=$(date +%s.%N)
    check_release "$release"
    say "$release: total $(since "$total") s"
done
printf '%s\n' "${SUMMARY[@]/#/arm64-check: PASS }"
