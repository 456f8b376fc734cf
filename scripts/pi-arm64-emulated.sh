#!/usr/bin/env bash
# edgevid on arm64, emulated: a Debian bookworm arm64 root (debootstrap + qemu-user-static), edgevid
# installed there exactly as README's Raspberry Pi section says (systemd/install.sh, dependencies
# from PyPI), `edgevid classify --json` on real clips compared with this machine's x86 venv (same
# top-1, every score within TOL), then a quick test subset. Results: $OUT/result.json; PI.md.
#
#   sudo scripts/pi-arm64-emulated.sh            # needs: debootstrap qemu-user-static binfmt-support
#   CLIPS="pour/0 golf/0" TESTS="tests/test_extractor.py" TOL=0.01 scripts/pi-arm64-emulated.sh
#
# Emulated inference is ~200x slower than native: timings here say nothing about a Pi.
# qemu-user shows the guest the host's /proc/cpuinfo, which crashes XNNPACK's CPU detection in
# Interpreter(): a Raspberry Pi 4 cpuinfo (scripts/pi4-cpuinfo.txt) is bind-mounted over it and
# QEMU_CPU=cortex-a72 makes the emulated CPU match it.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${ROOT:-/tmp/edgevid-arm64-root}
OUT=${OUT:-/tmp/edgevid-arm64}
SHARED=$(cd "${EDGEVID_SHARED:-$REPO/../shared}" && pwd)
X86_PY=${X86_PY:-$REPO/.venv/bin/python}
CLIPS=${CLIPS:-"pour/0 golf/0 climb_stairs/0"}
TESTS=${TESTS:-"tests/test_extractor.py tests/unit tests/test_file_sources.py tests/test_sampling.py"}
TOL=${TOL:-0.01}
. "$REPO/scripts/lib-debootstrap.sh"
mkdir -p "$OUT"
t0=$(date +%s); stamp() { echo "$(( $(date +%s) - t0 ))"; }
declare -A T

command -v debootstrap >/dev/null && [ -e /usr/libexec/qemu-binfmt/aarch64-binfmt-P -o -e /usr/bin/qemu-aarch64-static ] \
    || { echo "needs: apt-get install debootstrap qemu-user-static binfmt-support" >&2; exit 2; }
make_root arm64 "$ROOT"; T[root]=$(stamp)

MOUNTS=()
cleanup() { for ((i=${#MOUNTS[@]}-1; i>=0; i--)); do umount -l "${MOUNTS[i]}" 2>/dev/null || true; done; }
trap cleanup EXIT
bind() { mkdir -p "$2"; [ -f "$1" ] && touch "$2"; mount --bind "$1" "$2"; MOUNTS+=("$2"); }
mount -t proc proc "$ROOT/proc"; MOUNTS+=("$ROOT/proc")
mount --bind "$REPO/scripts/pi4-cpuinfo.txt" "$ROOT/proc/cpuinfo"; MOUNTS+=("$ROOT/proc/cpuinfo")
# XNNPACK's CPU detection also reads /sys/devices/system/cpu: without it, no delegate (slow path).
mkdir -p "$ROOT/sys"; mount -t sysfs -o ro sysfs "$ROOT/sys"; MOUNTS+=("$ROOT/sys")
bind "$SHARED" "$ROOT/shared"; mount -o remount,bind,ro "$ROOT/shared"
# The checkout as a user would have it (tracked and new files, no .venv/.git).
rm -rf "$ROOT/src/edgevid"; mkdir -p "$ROOT/src/edgevid"
(cd "$REPO" && git ls-files -co --exclude-standard -z | xargs -0 tar -cf - 2>/dev/null) | tar -xf - -C "$ROOT/src/edgevid"

# A network that inspects TLS has its own CA in this machine's bundle: give the guest the same bundle.
cp "${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}" "$ROOT/etc/ssl/certs/ca-certificates.crt"
guest() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
          PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
          LANG=C.UTF-8 QEMU_CPU=cortex-a72 EDGEVID_MODEL_DIR=/var/lib/edgevid/models EDGEVID_SHARED=/shared "$@"; }

echo "== guest: $(guest uname -m), $(guest python3 -V), $(guest python3 -c 'import platform,sysconfig; print(platform.machine(), sysconfig.get_platform())')"
echo "== install (systemd/install.sh, as README says)"
guest /usr/bin/env MODELS_FROM=/shared/models sh /src/edgevid/systemd/install.sh 2>&1 | tee "$OUT/install.log"
T[install]=$(stamp)
guest /opt/edgevid/bin/pip freeze > "$OUT/arm64-freeze.txt"
guest /opt/edgevid/bin/python -c "from edgevid.runtime import backend; from edgevid.extractor import Extractor; from pathlib import Path
from ai_edge_litert.interpreter import Interpreter
Interpreter(model_path='/var/lib/edgevid/models/mobilenet_v2_1.0_224_quant.tflite').allocate_tensors()  # logs the XNNPACK delegate
e = Extractor(Path('/var/lib/edgevid/models/mobilenet_v2_1.0_224_quant.tflite'), num_threads=4); print('runtime', backend()[0], 'batched', e.batched)" 2>&1 \
    | grep -v '^Error in cpuinfo' | tee "$OUT/runtime.txt"
grep -q "XNNPACK delegate" "$OUT/runtime.txt" || echo "warning: no XNNPACK delegate in the guest (slow reference kernels)" | tee -a "$OUT/runtime.txt"

echo "== classify on real clips, arm64 (emulated) vs x86"
: > "$OUT/classify.jsonl"
for spec in $CLIPS; do
    cls=${spec%/*}; idx=${spec#*/}
    clip=$(ls "$SHARED/data/jhmdb/$cls"/*.avi | sort | sed -n "$((idx + 1))p")
    rel=${clip#"$SHARED"/}
    s=$(date +%s); arm=$(guest /usr/local/bin/edgevid classify --json --top-k 21 "/shared/$rel"); e=$(( $(date +%s) - s ))
    x86=$(EDGEVID_MODEL_DIR=$SHARED/models "$X86_PY" -m edgevid classify --json --top-k 21 \
          --extractor "$SHARED/models/mobilenet_v2_1.0_224_quant.tflite" "$clip")
    printf '{"clip": "%s", "arm_seconds": %s, "arm64": %s, "x86": %s}\n' "$rel" "$e" "$arm" "$x86" >> "$OUT/classify.jsonl"
done
T[classify]=$(stamp)

echo "== quick test subset under emulation: $TESTS"
guest /opt/edgevid/bin/pip install -q pytest pytest-timeout hypothesis > "$OUT/pip-test.log" 2>&1
set +e
guest sh -c "cd /src/edgevid && /opt/edgevid/bin/python -m pytest -q -m 'not slow' -p no:cacheprovider $TESTS" 2>&1 | tee "$OUT/tests.log"
tests_rc=${PIPESTATUS[0]}
set -e
T[tests]=$(stamp)

"$X86_PY" - "$OUT" "$TOL" "$tests_rc" "${T[root]}" "${T[install]}" "${T[classify]}" "${T[tests]}" <<'PY'
import json, sys
out, tol, tests_rc = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
t = dict(zip(["root", "install", "classify", "tests"], map(int, sys.argv[4:8])))
rows, ok = [], True
for line in open(f"{out}/classify.jsonl"):
    r = json.loads(line)
    a = {s["label"]: s["score"] for s in r["arm64"]["top"]}
    x = {s["label"]: s["score"] for s in r["x86"]["top"]}
    diff = max(abs(a[k] - x[k]) for k in x)
    same = r["arm64"]["top"][0]["label"] == r["x86"]["top"][0]["label"]
    ok &= same and diff <= tol
    rows.append({"clip": r["clip"], "top1_arm64": r["arm64"]["top"][0], "top1_x86": r["x86"]["top"][0],
                 "max_abs_score_diff": round(diff, 4), "same_top1": same, "arm_classify_seconds": r["arm_seconds"]})
runtime = " | ".join(open(f"{out}/runtime.txt").read().strip().splitlines())
tests = open(f"{out}/tests.log").read().strip().splitlines()
res = {"ok": bool(ok) and tests_rc == 0, "tolerance": tol, "runtime": runtime, "clips": rows,
       "tests_rc": tests_rc, "tests_summary": tests[-1] if tests else "",
       "seconds_since_start": t}
json.dump(res, open(f"{out}/result.json", "w"), indent=1)
print(json.dumps(res, indent=1))
sys.exit(0 if res["ok"] else 1)
PY
