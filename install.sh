#!/bin/bash
# install.sh: install pillowd on Raspberry Pi OS (or any Debian with systemd).
#
#   sudo ./install.sh              install or upgrade, enable and (re)start
#   sudo ./install.sh --pwm-root   force the root drop-in for ws281x PWM (applied
#                                  anyway when the config asks for a PWM/PCM pin)
#   sudo ./install.sh --uninstall  remove all but /etc/pillowd and /var/lib/pillowd
#   ./install.sh --root DIR        stage the same tree under DIR, touching nothing else
#   ./install.sh --dry-run ...     print what would be done
#
# Run again, it upgrades in place: the venv and unit are refreshed, the config
# (/etc/pillowd/config.toml) is never overwritten. See docs/raspberry-pi.md.
#
# No Node: the status page's Socket.IO client is fetched from its npm archive and
# checked against package-lock.json by tools/socketio_client.py (Python only).
# What Debian and Raspberry Pi OS ship as packages (python3-systemd,
# python3-lgpio, python3-numpy) comes from apt, into a venv with
# --system-site-packages; pip builds only rpi-ws281x (gcc, python3-dev).

set -euo pipefail
umask 022

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SRC
readonly VENDOR_JS=web/static/vendor/socket.io.min.js

ROOT=""
DRY_RUN=0
SYSTEMD_RUNNING=1
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
  --pwm-root      install systemd/pillowd-pwm-root.conf (root, for the rpi_ws281x
                  PWM/PCM LED driver) even if the config asks for no PWM/PCM pin;
                  it is applied anyway when the config does
  --no-start      enable the service but do not (re)start it
  --extras LIST   extras, e.g. "pi,systemd" (default: pi,systemd on a Raspberry
                  Pi, systemd elsewhere); apt provides what it has of them
                  (python3-systemd, python3-lgpio), pip the rest

The page's Socket.IO client comes from the npm registry in \$npm_config_registry,
else "registry=" in /etc/npmrc or ~/.npmrc (npm itself is not needed).
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
readonly UDEV_RULE=$ROOT/etc/udev/rules.d/60-pillowd-leds.rules
readonly DOC_DIR=$PREFIX/share/doc/pillowd
# On PATH, so the owner's commands are `sudo pillowd join DIR` and the like.
readonly COMMAND_LINK=$ROOT/usr/local/bin/pillowd

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
        ((DRY_RUN)) || [[ $EUID -eq 0 ]] || die "must run as root: sudo $0 ${ARGS[*]}"
        if [[ ! -d /run/systemd/system ]]; then
            # An image being prepared, a container or a chroot: install it all,
            # start nothing; the unit runs once the system boots with systemd.
            SYSTEMD_RUNNING=0
            warn "systemd is not running here (PID 1 is $(cat /proc/1/comm 2>/dev/null || echo unknown)): installing, but not enabling or starting the service"
        fi
    fi
}

resolve_extras() {
    if [[ $EXTRAS == auto ]]; then
        if is_raspberry_pi; then EXTRAS=pi,systemd; else
            EXTRAS=systemd
            say "not a Raspberry Pi: installing without the [pi] extra (LED drivers); hardware backend 'auto' will use the mock"
        fi
    fi
}

has_extra() { [[ ,$EXTRAS, == *,$1,* ]]; }

# Whether apt can install package $1 (after apt-get update).
apt_has() {
    local candidate
    candidate=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }')
    [[ -n $candidate && $candidate != "(none)" ]]
}

check_python() {
    command -v "$PYTHON" >/dev/null \
        || die "no $PYTHON: install Python 3.11 or newer (apt-get install python3)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$PYTHON is $("$PYTHON" -V 2>&1); pillowd needs Python 3.11 or newer"
}

# After apt_packages, which installs python3-venv on a live install.
check_venv() {
    "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null \
        || die "$PYTHON cannot create virtual environments: apt-get install python3-venv"
}

# Debian packages, following the extras, all with --no-install-recommends (a Pi
# Zero's SD card and apt time are small). numpy from apt too: PyPI has no armhf
# build, and compiling it on a Pi takes hours.
apt_packages() {
    local wanted=(python3-venv ca-certificates python3-numpy)
    # Trixie's minimal images have no passwd (useradd, groupadd, usermod).
    command -v useradd >/dev/null || wanted+=(passwd)
    # The journal fields: Debian's python3-systemd instead of building
    # systemd-python (libsystemd-dev, pkg-config, gcc).
    ! has_extra systemd || wanted+=(python3-systemd)
    # rpi-ws281x has no Pi wheel on PyPI: pip builds it.
    ! has_extra pi || wanted+=(gcc python3-dev)
    say "updating apt's package lists"
    run apt-get update -qq || die "apt-get update failed: no network? (needed for ${wanted[*]})"
    if has_extra pi; then
        # lgpio, gpiozero's pin factory, is a Raspberry Pi OS package: PyPI has
        # no build for Python 3.13 (and a 0.0.0.2 stub), and building it needs
        # liblgpio-dev, which plain Debian lacks.
        if apt_has python3-lgpio; then
            wanted+=(python3-lgpio)
        else
            warn "python3-lgpio is not in this system's apt sources (a Raspberry Pi OS package): installing without lgpio; the LED drivers do not need it, the button and actuators do"
        fi
    fi
    local missing=() package
    for package in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$package")
    done
    ((${#missing[@]})) || return 0
    say "installing Debian packages: ${missing[*]}"
    local apt_install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq
                       --no-install-recommends "${missing[@]}")
    if ((DRY_RUN)); then
        run "${apt_install[@]}"
        return
    fi
    # dpkg's unpacking lines are noise unless it fails.
    local log
    log=$(mktemp "${TMPDIR:-/tmp}/pillowd-apt.XXXXXX")
    if ! "${apt_install[@]}" >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        rm -f "$log"
        die "apt-get install ${missing[*]} failed"
    fi
    rm -f "$log"
}

ensure_user() {
    if ! getent passwd pillowd >/dev/null; then
        say "creating system user pillowd"
        run useradd --system --user-group --home-dir /var/lib/pillowd \
            --no-create-home --shell /usr/sbin/nologin --comment "Huggable Cloud Pillow" pillowd
    fi
    # The unit names both groups; systemd refuses to start a unit whose
    # SupplementaryGroups= do not exist, so create them where the OS did not
    # (Raspberry Pi OS has both, with udev rules giving them the devices; gpio
    # also gets the Pi 5's /dev/leds0 from our rule).
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

# The source tree as installed: a copy (so pip's build/ never lands in the
# checkout as root), with the Socket.IO client fetched and verified (a client
# already in the checkout is used when the lock's hash still names it).
prepare_source() {
    BUILD=$(mktemp -d "${TMPDIR:-/tmp}/pillowd-install.XXXXXX")
    trap 'rm -rf -- "$BUILD"' EXIT
    tar -C "$SRC" --exclude=./.git --exclude=./.venv --exclude=./node_modules \
        --exclude=./build --exclude=./dist --exclude=./.state --exclude=./bench/out \
        --exclude=./.pytest_cache --exclude=./.hypothesis \
        --exclude='*.egg-info' --exclude=__pycache__ -cf - . | tar -C "$BUILD" -xf -
    "$PYTHON" "$BUILD/tools/socketio_client.py" "$BUILD" \
        || die "cannot install the status page without its Socket.IO client (above)"
}

pip_install() {
    local log
    log=$(mktemp "${TMPDIR:-/tmp}/pillowd-pip.XXXXXX")
    say "pip install $*"
    if "$PREFIX/bin/pip" install --upgrade --upgrade-strategy only-if-needed \
            --disable-pip-version-check --no-input "$@" >"$log" 2>&1; then
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

# The pip requirements of the extras, one a line, from pyproject.toml, less what
# apt provided on a live install (lgpio, systemd-python): pip would try to build
# them. lgpio never comes from PyPI (no build for every Python; a 0.0.0.2 stub).
pip_extras() {
    "$PYTHON" - "$SRC/pyproject.toml" "$1" "$STAGING" <<'EOF'
import re, sys, tomllib
with open(sys.argv[1], "rb") as f:
    extras = tomllib.load(f)["project"]["optional-dependencies"]
from_apt = {"lgpio"} if sys.argv[3] == "1" else {"lgpio", "systemd-python"}
for extra in filter(None, sys.argv[2].split(",")):
    if extra not in extras:
        sys.exit(f"install.sh: error: unknown extra {extra!r}: pyproject.toml has "
                 f"{', '.join(sorted(extras))}")
    for requirement in extras[extra]:
        if re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower() not in from_apt:
            print(requirement)
EOF
}

install_venv() {
    # The [pi] extra (rpi-ws281x, built by pip) apart from the rest, so that
    # a failed build still leaves a working install without it.
    local requirements extra_specs=() base_specs=()
    requirements=$(pip_extras "$EXTRAS") || exit 1
    [[ -z $requirements ]] || mapfile -t extra_specs <<<"$requirements"
    local others=,$EXTRAS,
    requirements=$(pip_extras "${others//,pi,/,}") || exit 1
    [[ -z $requirements ]] || mapfile -t base_specs <<<"$requirements"
    # A live install sees apt's python3-systemd, -lgpio and -numpy through the
    # system site packages; a staged tree (no apt) gets everything from pip.
    local site=false venv_args=(--clear)
    ((STAGING)) || { site=true; venv_args+=(--system-site-packages); }
    if [[ -x $PREFIX/bin/python ]] && "$PREFIX/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
            && grep -qx "include-system-site-packages = $site" "$PREFIX/pyvenv.cfg" 2>/dev/null; then
        say "upgrading the virtual environment in $PREFIX"
    else
        say "creating a virtual environment in $PREFIX (system site packages: $site)"
        run "$PYTHON" -m venv "${venv_args[@]}" "$PREFIX"
    fi
    if ((DRY_RUN)); then
        printf '+ %s\n' "$PREFIX/bin/pip install --upgrade <copy of $SRC with $VENDOR_JS> ${extra_specs[*]}"
        return
    fi
    prepare_source
    if pip_install "$BUILD" "${extra_specs[@]}"; then :
    elif has_extra pi && pip_install "$BUILD" "${base_specs[@]}"; then
        warn "the [pi] extra (rpi-ws281x) failed to build: installed without it; the LEDs will not light until it does (see the pip output above)"
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
import pillowd.page.app
vendored = pillowd.page.app.page_files() / sys.argv[1].removeprefix("web/")
sys.exit(not vendored.is_file())
EOF
}

# Whether the installed config drives the LEDs with rpi_ws281x's PWM or PCM
# (GPIO 12, 13, 18, 19, 21): DMA through /dev/mem, which only root may open.
# Asked of pillowd itself, so a key left out gets pillowd's own default. Driver
# "auto" is pio on a Pi 5 (no root) and otherwise taken as ws281x, even off a
# Pi: a tree staged elsewhere is for a Pi.
config_needs_root() {
    "$PREFIX/bin/python" -I - "$CONF_DIR/config.toml" <<'EOF'
import sys
from pillowd.config import load
from pillowd.hardware.base import led_driver_for, read_pi_model
settings = load(sys.argv[1])
driver = settings.leds.driver
if driver == "auto":
    driver = "pio" if led_driver_for(read_pi_model()) == "pio" else "ws281x"
pwm = (settings.hardware.backend != "mock" and driver == "ws281x"
       and settings.leds.pin in (12, 13, 18, 19, 21))
print(f"GPIO {settings.leds.pin}" if pwm else "")
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
    install_control_token
    run install -d -m 0750 "$STATE_DIR"
    ((STAGING)) || run chown pillowd:pillowd "$STATE_DIR"
    run install -m 0644 "$SRC/systemd/pillowd.service" "$UNIT"
    # The Pi 5's /dev/leds0 (ws2812-pio overlay) is root's alone without this rule.
    run install -D -m 0644 "$SRC/systemd/60-pillowd-leds.rules" "$UDEV_RULE"
    if ((!STAGING)) && command -v udevadm >/dev/null && [[ -d /run/udev ]]; then
        run udevadm control --reload || true
        [[ ! -e /dev/leds0 ]] || run udevadm trigger --name-match=/dev/leds0 || true
    fi
    install_root_dropin
    [[ ! -f $SRC/docs/raspberry-pi.md ]] || run install -m 0644 "$SRC/docs/raspberry-pi.md" "$DOC_DIR/"
    run install -d -m 0755 "${COMMAND_LINK%/*}"
    run ln -sfn "$PREFIX/bin/pillowd" "$COMMAND_LINK"
}

# The control token: a random 128-bit one when there is none, readable by root
# only; systemd hands it to the daemon as the credential control-token (the
# unit's LoadCredential=). An existing one is kept, whatever its age.
install_control_token() {
    local file=$CONF_DIR/control-token shown=${CONF_DIR#"$ROOT"}/control-token
    if [[ -s $file ]]; then
        say "keeping the control token in $shown (read it with: sudo cat $shown)"
        return 0
    fi
    say "making a random control token in $shown (read it with: sudo cat $shown)"
    if ((DRY_RUN)); then
        printf '+ %s\n' "write a random 128-bit token to $file (mode 0600)"
        return 0
    fi
    local token
    token=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(16))') \
        || die "cannot make a random control token"
    (umask 077 && printf '%s\n' "$token" >"$file.new") || die "cannot write $file"
    mv -f -- "$file.new" "$file"
}

# Root only where the config needs it: the drop-in is there when the config asks
# for a PWM/PCM pin (or --pwm-root), and removed when it no longer does.
install_root_dropin() {
    local pwm=""
    if ((DRY_RUN)); then
        ((PWM_ROOT)) && run install -D -m 0644 "$SRC/systemd/pillowd-pwm-root.conf" "$DROPIN"
        return 0
    fi
    if ! "$PREFIX/bin/pillowd" check-config --config "$CONF_DIR/config.toml"; then
        warn "$CONF_DIR/config.toml has errors (above): pillowd will not start until they are fixed"
        [[ ! -e $DROPIN ]] || run install -m 0644 "$SRC/systemd/pillowd-pwm-root.conf" "$DROPIN"
        return 0
    fi
    pwm=$(config_needs_root) || die "could not read the LED settings of $CONF_DIR/config.toml"
    if [[ -n $pwm ]]; then
        say "the config drives the LEDs by PWM/PCM on $pwm, which needs root: installing the root drop-in $DROPIN (SPI on GPIO 10 would not)"
        run install -D -m 0644 "$SRC/systemd/pillowd-pwm-root.conf" "$DROPIN"
    elif ((PWM_ROOT)); then
        say "installing the root drop-in $DROPIN (--pwm-root)"
        run install -D -m 0644 "$SRC/systemd/pillowd-pwm-root.conf" "$DROPIN"
    elif [[ -e $DROPIN ]]; then
        say "the config needs no root (no PWM/PCM LED pin): removing the root drop-in $DROPIN"
        run rm -f -- "$DROPIN"
        run rmdir --ignore-fail-on-non-empty -- "${DROPIN%/*}"
    else
        say "pillowd runs as the unprivileged pillowd user (no PWM/PCM LED pin in the config)"
    fi
}

start_service() {
    if ((!SYSTEMD_RUNNING)); then
        say "installed; no systemd here: run it with 'runuser -u pillowd -- /opt/pillowd/bin/pillowd run --config /etc/pillowd/config.toml', or boot this system and 'systemctl enable --now pillowd'"
        return
    fi
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
    if ((!STAGING && SYSTEMD_RUNNING)) && systemctl list-unit-files pillowd.service >/dev/null 2>&1; then
        run systemctl disable --now pillowd.service || true
    fi
    local path
    [[ ! -L $COMMAND_LINK || $(readlink -- "$COMMAND_LINK") != "$PREFIX/bin/pillowd" ]] \
        || run rm -f -- "$COMMAND_LINK"
    for path in "$DROPIN" "$UNIT" "$UDEV_RULE"; do
        [[ ! -e $path ]] || run rm -f -- "$path"
    done
    [[ ! -d ${DROPIN%/*} ]] || run rmdir --ignore-fail-on-non-empty -- "${DROPIN%/*}"
    ((STAGING || !SYSTEMD_RUNNING)) || run systemctl daemon-reload
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
    resolve_extras
    if ((!STAGING)); then
        apt_packages
        ensure_user
    fi
    ((DRY_RUN)) || check_venv
    install_venv
    install_files
    if ((STAGING)); then
        say "staged under $ROOT (no user, no systemctl; the venv runs only from $PREFIX)"
    else
        start_service
    fi
}

main "$@"
