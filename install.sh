#!/bin/bash
# install.sh: install pillowd on Raspberry Pi OS (or any Debian with systemd).
#
#   sudo ./install.sh              install or upgrade, enable and (re)start
#   sudo ./install.sh --pwm-root   also install the root drop-in for ws281x PWM
#   sudo ./install.sh --uninstall  remove all but /etc/pillowd and /var/lib/pillowd
#   ./install.sh --root DIR        stage the same tree under DIR, touching nothing else
#   ./install.sh --dry-run ...     print what would be done
#
# Run again, it upgrades in place: the venv and unit are refreshed, the config
# (/etc/pillowd/config.toml) is never overwritten. See docs/raspberry-pi.md.

set -euo pipefail
umask 022

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SRC
readonly VENDOR_JS=web/static/vendor/socket.io.min.js

ROOT=""
DRY_RUN=0
UNINSTALL=0
PWM_ROOT=0
START=1
EXTRAS=auto
PYTHON=${PYTHON:-python3}
readonly ARGS=("$@")

usage() {
    cat <<EOF
usage: $0 [--root DIR] [--dry-run] [--uninstall] [--pwm-root] [--no-start] [--extras LIST]

  --root DIR      stage the whole tree under DIR (DIR/opt/pillowd, DIR/etc/pillowd,
                  DIR/etc/systemd/system, DIR/var/lib/pillowd); no apt, no user,
                  no systemctl; needs no root. The venv is bound to DIR: it runs
                  there, not when copied elsewhere.
  --dry-run       print each step instead of doing it
  --uninstall     remove the venv, the unit and its drop-in; keep config and state
  --pwm-root      install systemd/pillowd-pwm-root.conf: run as root for the
                  rpi_ws281x PWM/PCM LED driver (not needed for SPI or Pi 5 PIO)
  --no-start      enable the service but do not (re)start it
  --extras LIST   pip extras, e.g. "pi,systemd" (default: pi,systemd on a
                  Raspberry Pi, systemd elsewhere)
EOF
}

say() { printf '%s\n' "install.sh: $*"; }
warn() { printf '%s\n' "install.sh: warning: $*" >&2; }
die() { printf '%s\n' "install.sh: error: $*" >&2; exit 1; }

# Every step that changes something goes through run, so --dry-run shows it.
run() {
    if ((DRY_RUN)); then
        printf '+ %s\n' "$*"
    else
        "$@"
    fi
}

while (($#)); do
    case $1 in
        --root) [[ $# -ge 2 && -n $2 ]] || die "--root needs a directory"; ROOT=$2; shift ;;
        --root=*) ROOT=${1#--root=}; [[ -n $ROOT ]] || die "--root needs a directory" ;;
        --dry-run|-n) DRY_RUN=1 ;;
        --uninstall) UNINSTALL=1 ;;
        --pwm-root) PWM_ROOT=1 ;;
        --no-start) START=0 ;;
        --extras) [[ $# -ge 2 ]] || die "--extras needs a list"; EXTRAS=$2; shift ;;
        --extras=*) EXTRAS=${1#--extras=} ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
    shift
done

if [[ -n $ROOT ]]; then
    ROOT=$(realpath -m -- "$ROOT")
    ((DRY_RUN)) || mkdir -p -- "$ROOT" || die "cannot create $ROOT"
    [[ $ROOT != / ]] || die "--root / is the live system: run without --root"
fi
STAGING=0
[[ -z $ROOT ]] || STAGING=1

readonly PREFIX=$ROOT/opt/pillowd
readonly CONF_DIR=$ROOT/etc/pillowd
readonly STATE_DIR=$ROOT/var/lib/pillowd
readonly UNIT_DIR=$ROOT/etc/systemd/system
readonly UNIT=$UNIT_DIR/pillowd.service
readonly DROPIN=$UNIT_DIR/pillowd.service.d/pwm-root.conf
readonly DOC_DIR=$PREFIX/share/doc/pillowd

is_raspberry_pi() {
    grep -qs "Raspberry Pi" /proc/device-tree/model
}

check_system() {
    # A staged tree needs only Python; the real install needs a Debian-family
    # system booted with systemd, and root.
    if ((!STAGING)); then
        [[ $(uname -s) == Linux ]] || die "unsupported OS $(uname -s): pillowd installs on Linux with systemd"
        local id="" id_like=""
        # shellcheck disable=SC1091
        [[ -r /etc/os-release ]] && { id=$(. /etc/os-release; echo "${ID:-}"); id_like=$(. /etc/os-release; echo "${ID_LIKE:-}"); }
        [[ " $id $id_like " == *" debian "* || $id == raspbian ]] \
            || die "unsupported OS '${id:-unknown}': this script needs Raspberry Pi OS or Debian (apt, systemd); see docs/raspberry-pi.md to install by hand"
        [[ -d /run/systemd/system ]] || die "systemd is not running (PID 1 is $(ps -p 1 -o comm= 2>/dev/null || echo unknown)): cannot install a service; use --root DIR to stage"
        ((DRY_RUN)) || [[ $EUID -eq 0 ]] || die "must run as root: sudo $0 ${ARGS[*]}"
    fi
}

check_python() {
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$PYTHON is $("$PYTHON" -V 2>&1); pillowd needs Python 3.11 or newer"
    "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null \
        || die "$PYTHON cannot create virtual environments: apt-get install python3-venv"
}

# Debian packages: the venv module, and what pip needs to build systemd-python
# (and, on a Pi without piwheels, rpi-ws281x and lgpio).
apt_packages() {
    local wanted=(python3-venv python3-dev gcc pkg-config libsystemd-dev)
    if is_raspberry_pi; then
        wanted+=(swig liblgpio-dev)
    fi
    if [[ ! -f $SRC/$VENDOR_JS ]] && ! command -v npm >/dev/null; then
        wanted+=(nodejs npm)
    fi
    local missing=() package
    for package in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$package")
    done
    ((${#missing[@]})) || return 0
    say "installing Debian packages: ${missing[*]}"
    run apt-get update -qq || die "apt-get update failed: no network? (needed to download ${missing[*]})"
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" \
        || die "apt-get install ${missing[*]} failed"
}

ensure_user() {
    if ! getent passwd pillowd >/dev/null; then
        say "creating system user pillowd"
        run useradd --system --user-group --home-dir /var/lib/pillowd \
            --no-create-home --shell /usr/sbin/nologin --comment "Huggable Cloud Pillow" pillowd
    fi
    # The unit names both groups; systemd refuses to start a unit whose
    # SupplementaryGroups= do not exist, so create them where the OS did not
    # (Raspberry Pi OS has both, with udev rules giving them the devices).
    local group
    for group in gpio spi; do
        if ! getent group "$group" >/dev/null; then
            say "creating system group $group (no $group devices on this machine)"
            run groupadd --system "$group"
        fi
        if ! id -nG pillowd 2>/dev/null | tr ' ' '\n' | grep -qx "$group"; then
            run usermod -a -G "$group" pillowd
        fi
    done
}

# The source tree as installed: a copy (so neither pip's build/ nor npm's
# node_modules land in the checkout as root), with the Socket.IO client that
# `make vendor` would have fetched.
prepare_source() {
    BUILD=$(mktemp -d "${TMPDIR:-/tmp}/pillowd-install.XXXXXX")
    trap 'rm -rf -- "$BUILD" "$BUILD.npm"' EXIT
    tar -C "$SRC" --exclude=./.git --exclude=./.venv --exclude=./node_modules \
        --exclude=./build --exclude=./dist --exclude=./.state --exclude=./bench/out \
        --exclude=./.pytest_cache --exclude=./.hypothesis \
        --exclude='*.egg-info' --exclude=__pycache__ -cf - . | tar -C "$BUILD" -xf -
    if [[ ! -f $BUILD/$VENDOR_JS ]]; then
        command -v npm >/dev/null \
            || die "$VENDOR_JS is missing and npm is not installed: install npm (apt-get install npm) or run 'make vendor' first"
        local version
        version=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["dependencies"]["socket.io-client"])' \
            "$SRC/package.json" 2>/dev/null) || version=4
        say "fetching socket.io-client@$version with npm"
        # A package of its own, so npm neither walks up to the project's
        # package.json nor installs its test tools (Azurite) on the Pi.
        local npm_dir=$BUILD.npm
        mkdir -p "$npm_dir"
        echo '{"private": true}' >"$npm_dir/package.json"
        if ! (cd "$npm_dir" && npm install --no-save --no-audit --no-fund --loglevel=error \
                "socket.io-client@$version" >/dev/null); then
            rm -rf -- "$npm_dir"
            die "npm could not fetch socket.io-client: no network? (or run 'make vendor' and retry)"
        fi
        mkdir -p "$BUILD/web/static/vendor"
        cp "$npm_dir/node_modules/socket.io-client/dist/socket.io.min.js" "$BUILD/$VENDOR_JS"
        rm -rf -- "$npm_dir"
    fi
}

pip_install() {
    local spec=$1 log
    log=$(mktemp "${TMPDIR:-/tmp}/pillowd-pip.XXXXXX")
    say "pip install $spec"
    if "$PREFIX/bin/pip" install --upgrade --upgrade-strategy only-if-needed \
            --disable-pip-version-check --no-input "$spec" >"$log" 2>&1; then
        rm -f "$log"
        return 0
    fi
    tail -n 20 "$log" >&2
    if grep -qE "NewConnectionError|Temporary failure in name resolution|Network is unreachable|ConnectTimeout|ReadTimeout|No matching distribution found" "$log"; then
        rm -f "$log"
        die "pip could not download packages: no network, or the package index is unreachable"
    fi
    rm -f "$log"
    return 1
}

install_venv() {
    if [[ -x $PREFIX/bin/python ]] && "$PREFIX/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        say "upgrading the virtual environment in $PREFIX"
    else
        say "creating a virtual environment in $PREFIX"
        run "$PYTHON" -m venv --clear "$PREFIX"
    fi
    local extras=$EXTRAS
    if [[ $extras == auto ]]; then
        if is_raspberry_pi; then extras=pi,systemd; else
            extras=systemd
            say "not a Raspberry Pi: installing without the [pi] extra (LED drivers); hardware backend 'auto' will use the mock"
        fi
    fi
    if ((DRY_RUN)); then
        printf '+ %s\n' "$PREFIX/bin/pip install --upgrade <copy of $SRC with $VENDOR_JS>[$extras]"
        return
    fi
    prepare_source
    if pip_install "${BUILD}[$extras]"; then :
    elif [[ ,$extras, == *,pi,* ]] && pip_install "${BUILD}[systemd]"; then
        warn "the [pi] extra (rpi-ws281x, lgpio) failed to build: installed without it; the LEDs will not light until it does (see the pip output above)"
    elif pip_install "$BUILD"; then
        warn "the [$extras] extras failed to build: installed without them; no journal fields or LED drivers (see the pip output above)"
    else
        die "pip could not install pillowd (see the output above)"
    fi
    # pip records the temporary source path (PEP 610): it is gone once we
    # exit, and would make every run's tree differ. Then check the package
    # carries the Socket.IO client its page loads.
    "$PREFIX/bin/python" -I - "$VENDOR_JS" <<'EOF' || die "the installed package lacks the Socket.IO client ($VENDOR_JS)"
import pathlib, sys
for info in pathlib.Path(sys.prefix).glob("lib/python3*/site-packages/pillowd-*.dist-info"):
    (info / "direct_url.json").unlink(missing_ok=True)
    record = info / "RECORD"
    lines = record.read_text().splitlines(keepends=True)
    record.write_text("".join(l for l in lines if not l.startswith(info.name + "/direct_url.json,")))
import pillowd.web
vendored = pillowd.web.page_files() / sys.argv[1].removeprefix("web/")
sys.exit(not vendored.is_file())
EOF
}

install_files() {
    run install -d -m 0755 "$CONF_DIR" "$UNIT_DIR" "$DOC_DIR"
    if [[ -e $CONF_DIR/config.toml ]]; then
        say "keeping $CONF_DIR/config.toml"
    else
        say "installing the default config as $CONF_DIR/config.toml"
        run install -m 0644 "$SRC/config.toml" "$CONF_DIR/config.toml"
    fi
    run install -d -m 0750 "$STATE_DIR"
    ((STAGING)) || run chown pillowd:pillowd "$STATE_DIR"
    run install -m 0644 "$SRC/systemd/pillowd.service" "$UNIT"
    if ((PWM_ROOT)); then
        say "installing the root drop-in for the ws281x PWM driver as $DROPIN"
        run install -D -m 0644 "$SRC/systemd/pillowd-pwm-root.conf" "$DROPIN"
    elif [[ -e $DROPIN ]]; then
        run install -m 0644 "$SRC/systemd/pillowd-pwm-root.conf" "$DROPIN"  # refresh what was asked for before
    fi
    [[ ! -f $SRC/docs/raspberry-pi.md ]] || run install -m 0644 "$SRC/docs/raspberry-pi.md" "$DOC_DIR/"
    if ((!DRY_RUN)) && ! "$PREFIX/bin/pillowd" check-config --config "$CONF_DIR/config.toml"; then
        warn "$CONF_DIR/config.toml has errors (above): pillowd will not start until they are fixed"
    fi
}

start_service() {
    run systemctl daemon-reload
    run systemctl enable pillowd.service
    ((START)) || { say "enabled; not started (--no-start)"; return; }
    # Type=notify: restart returns once the daemon is really ready, or fails.
    say "starting pillowd (waits until it reports ready)"
    if ! run systemctl restart pillowd.service; then
        die "pillowd did not start: see 'systemctl status pillowd' and 'journalctl -u pillowd -b'"
    fi
    ((DRY_RUN)) || systemctl --no-pager status pillowd.service | head -n 5 || true
}

uninstall() {
    if ((!STAGING)) && systemctl list-unit-files pillowd.service >/dev/null 2>&1; then
        run systemctl disable --now pillowd.service || true
    fi
    local path
    for path in "$DROPIN" "$UNIT" ; do
        [[ ! -e $path ]] || run rm -f -- "$path"
    done
    [[ ! -d ${DROPIN%/*} ]] || run rmdir --ignore-fail-on-non-empty -- "${DROPIN%/*}"
    ((STAGING)) || run systemctl daemon-reload
    [[ ! -e $PREFIX ]] || run rm -rf -- "$PREFIX"
    say "removed pillowd; kept $CONF_DIR and $STATE_DIR"
    ((STAGING)) || say "to remove those too: sudo rm -rf /etc/pillowd /var/lib/pillowd && sudo userdel pillowd"
}

main() {
    check_system
    if ((UNINSTALL)); then
        uninstall
        return
    fi
    ((DRY_RUN && STAGING)) || check_python
    if ((!STAGING)); then
        apt_packages
        ensure_user
    fi
    install_venv
    install_files
    if ((STAGING)); then
        say "staged under $ROOT (no user, no systemctl; the venv runs only from $PREFIX)"
    else
        start_service
    fi
}

main "$@"
