#!/usr/bin/env bash
# 32-bit Arm (armhf), emulated: does `pip install` of edgevid stop at once with its one-line reason
# (no PyPI wheels for 32-bit Arm, PI.md) instead of compiling numpy/OpenCV/pyzmq from source?
# Also lists, from this machine, which runtime dependencies PyPI has Python 3.11 armv7l wheels for.
#
#   sudo scripts/pi-armhf-check.sh      # needs: debootstrap qemu-user-static binfmt-support
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${ROOT:-/tmp/edgevid-armhf-root}
. "$REPO/scripts/lib-debootstrap.sh"

echo "== PyPI wheels for Python 3.11 on armv7l (pip download --only-binary=:all:, linux and manylinux2014 tags)"
dl=$(mktemp -d); trap 'rm -rf "$dl"' EXIT
for req in "tflite-runtime" "ai-edge-litert" "numpy" "opencv-python-headless" "pyzmq" "pydantic-core" "flatbuffers" "uvloop"; do
    if pip download -q --no-deps --only-binary=:all: --platform manylinux2014_armv7l --platform linux_armv7l --python-version 3.11 --implementation cp \
           -d "$dl" "$req" >/dev/null 2>&1; then echo "  $req: wheel"; else echo "  $req: none"; fi
done

make_root armhf "$ROOT"
cp "${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}" "$ROOT/etc/ssl/certs/ca-certificates.crt"
rm -rf "$ROOT/src/edgevid"; mkdir -p "$ROOT/src/edgevid"
(cd "$REPO" && git ls-files -co --exclude-standard -z | xargs -0 tar -cf - 2>/dev/null) | tar -xf - -C "$ROOT/src/edgevid"
guest() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt "$@"; }
echo "== guest: $(guest python3 -c 'import platform, struct, sysconfig; print(platform.machine(), struct.calcsize("P") * 8, "bit", sysconfig.get_platform())')"
guest python3 -m venv /tmp/venv
start=$(date +%s)
set +e
guest /tmp/venv/bin/pip install /src/edgevid > /tmp/edgevid-armhf-pip.log 2>&1; rc=$?
set -e
echo "== pip install /src/edgevid: exit $rc after $(( $(date +%s) - start )) s; its reason:"
grep -m1 "^ *edgevid:" /tmp/edgevid-armhf-pip.log || { echo "no reason found: see /tmp/edgevid-armhf-pip.log"; exit 1; }
[ "$rc" != 0 ] && ! grep -q "Building wheel for numpy" /tmp/edgevid-armhf-pip.log
