#!/bin/sh
# Install edgevid as a systemd service on a Raspberry Pi (64-bit Raspberry Pi OS / Debian bookworm).
# Idempotent: run it again to upgrade the code or repair the install; it keeps an existing config.
#
#   sudo systemd/install.sh                  # from a checkout of this repository
#   sudo MODELS_FROM=/path/to/models systemd/install.sh   # models from a folder instead of downloading
#   sudo NO_START=1 systemd/install.sh       # everything but `systemctl enable --now`
#
# What it does (README "Raspberry Pi"):
#   1. python3-venv from apt if missing; a venv in /opt/edgevid (not under /home: the unit has
#      ProtectHome=yes), edgevid installed into it from this checkout with its PyPI dependencies;
#   2. /usr/local/bin/edgevid -> /opt/edgevid/bin/edgevid (the unit's ExecStart);
#   3. /etc/edgevid/edgevid.toml from systemd/edgevid.toml unless one exists, then `edgevid config check`;
#   4. the extractor into /var/lib/edgevid/models (`edgevid models fetch`: checked against the head, kept if installed);
#   5. the unit into /etc/systemd/system, and `systemctl enable --now edgevid` where systemd runs.
# The service runs as a DynamicUser in the `video` group (SupplementaryGroups=video): no account to make.
set -eu

PREFIX=${PREFIX:-/opt/edgevid}
BIN_LINK=${BIN_LINK:-/usr/local/bin/edgevid}
CONF_DIR=${CONF_DIR:-/etc/edgevid}
MODEL_DIR=${MODEL_DIR:-/var/lib/edgevid/models}
UNIT_DIR=${UNIT_DIR:-/etc/systemd/system}
SRC=$(cd "$(dirname "$0")/.." && pwd)

say() { echo "edgevid install: $*"; }
die() { echo "edgevid install: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (sudo $0)"
[ -f "$SRC/pyproject.toml" ] || die "$SRC is not an edgevid checkout (no pyproject.toml)"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python 3.11 or newer is needed (python3 is $(python3 -V 2>&1))"
# 32-bit userland (also on a 64-bit kernel, where uname says aarch64): PyPI has no wheels for it.
bits=$(python3 -c 'import struct; print(struct.calcsize("P") * 8)')
[ "$bits" = 64 ] || die "this Python is ${bits}-bit ($(python3 -c 'import sysconfig; print(sysconfig.get_platform())')): edgevid needs a 64-bit OS (README: 32-bit Raspberry Pi OS)"

# 1. venv (python3 -m venv needs ensurepip, which Debian ships in python3-venv)
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    command -v apt-get >/dev/null || die "python3-venv is missing and there is no apt-get to install it"
    say "installing python3-venv"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
fi
[ -x "$PREFIX/bin/python" ] || { say "creating venv $PREFIX"; python3 -m venv "$PREFIX"; }
say "installing edgevid from $SRC into $PREFIX"
"$PREFIX/bin/pip" install -q --upgrade pip
"$PREFIX/bin/pip" install -q --upgrade "$SRC"
# Byte-compile now: the service cannot write under /opt (ProtectSystem=strict).
"$PREFIX/bin/python" -m compileall -q "$PREFIX/lib" >/dev/null || true

# 2. the command the unit runs
ln -sfn "$PREFIX/bin/edgevid" "$BIN_LINK"

# 3. config: keep the user's; check it before anything starts
mkdir -p "$CONF_DIR"
[ -f "$CONF_DIR/edgevid.toml" ] || { say "writing $CONF_DIR/edgevid.toml"; cp "$SRC/systemd/edgevid.toml" "$CONF_DIR/edgevid.toml"; }

# 4. models (before the config check, which loads them). `models fetch` keeps an installed
#    extractor the head accepts (no network), else downloads one and checks it before installing.
mkdir -p "$MODEL_DIR"
if [ -n "${MODELS_FROM:-}" ]; then
    EDGEVID_MODEL_DIR="$MODEL_DIR" "$BIN_LINK" models fetch --from "$MODELS_FROM"
else
    EDGEVID_MODEL_DIR="$MODEL_DIR" "$BIN_LINK" models fetch
fi
EDGEVID_MODEL_DIR="$MODEL_DIR" "$BIN_LINK" config check "$CONF_DIR/edgevid.toml"

# 5. the unit
install -m 0644 "$SRC/systemd/edgevid.service" "$UNIT_DIR/edgevid.service"
if [ -z "${NO_START:-}" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable --now edgevid
    systemctl restart edgevid
    say "started: journalctl -u edgevid -f   |   $BIN_LINK subscribe"
else
    say "unit installed in $UNIT_DIR (not started: ${NO_START:+NO_START set}${NO_START:-systemd is not running here})"
fi
say "done: $("$BIN_LINK" --version 2>/dev/null || echo edgevid)"
