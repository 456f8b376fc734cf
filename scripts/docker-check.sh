#!/usr/bin/env bash
# Build docker/Dockerfile with podman and check the image: classify scores equal the x86 venv's, and
# the health check passes with CURVE on (and fails without the health key). Results: $OUT/result.json.
#
#   sudo scripts/docker-check.sh       # needs: podman runc debootstrap (Debian packages)
#   sudo ARCH=arm64 scripts/docker-check.sh   # the arm64 image, emulated (qemu-user-static, binfmt)
#
# No container registry is reachable here, so the pinned base (python:3.11.14-slim-bookworm) is
# replaced by a stand-in with the same name and layout, made with debootstrap: Debian bookworm's
# python3 in a venv at /usr/local (python and pip on PATH, as in the python image). Elsewhere, use
# the real base: STANDIN=0.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/edgevid-docker}
export ARCH=${ARCH:-amd64}
ROOT=${ROOT:-/tmp/edgevid-$ARCH-base-root}
SHARED=$(cd "${EDGEVID_SHARED:-$REPO/../shared}" && pwd)
X86_PY=${X86_PY:-$REPO/.venv/bin/python}
BASE=$(sed -n 's/^ARG BASE=//p' "$REPO/docker/Dockerfile")
IMAGE=${IMAGE:-localhost/edgevid:check-$ARCH}
# Scores: the amd64 image must equal the x86 venv; arm64 runs other kernels (PI.md: within 0.01).
export TOL=${TOL:-$([ "$ARCH" = amd64 ] && echo 1e-6 || echo 0.01)}
STANDIN_NAME=docker.io/library/$BASE
[ "$ARCH" = amd64 ] || STANDIN_NAME=localhost/standin-$ARCH:${BASE#*:}
. "$REPO/scripts/lib-debootstrap.sh"
mkdir -p "$OUT"; rm -f "$OUT"/*.json
t0=$(date +%s); stamp() { echo "$(( $(date +%s) - t0 ))"; }
# podman in a container: runc, and the open-file limit its build steps can actually get.
PODMAN=(podman --runtime runc)
RUN_OPTS=(--arch "$ARCH" --ulimit nofile=1024:1024 --ulimit nproc=4096:4096)  # limits runc may set in this sandbox
BUILD_OPTS=(--arch "$ARCH" --format docker --ulimit nofile=1024:1024 --network host --pull=never)
[ "${STANDIN:-1}" = 1 ] && BUILD_OPTS+=(--build-arg "BASE=$STANDIN_NAME")
if [ "$ARCH" != amd64 ]; then
    # Emulated: a Raspberry Pi 4 cpuinfo for XNNPACK's CPU detection (PI.md, arm64 traps).
    RUN_OPTS+=(-e QEMU_CPU=cortex-a72 -v "$REPO/scripts/pi4-cpuinfo.txt:/proc/cpuinfo:ro")
fi

if [ "${STANDIN:-1}" = 1 ] && ! "${PODMAN[@]}" image exists "$STANDIN_NAME"; then
    make_root "$ARCH" "$ROOT"
    chroot "$ROOT" sh -c 'python3 -m venv /usr/local && /usr/local/bin/pip --version' >/dev/null
    # A network that inspects TLS has its own CA in this machine's bundle: the stand-in trusts it too.
    cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
    tar -C "$ROOT" --exclude=./.edgevid-root-ok -c . | "${PODMAN[@]}" import --arch "$ARCH" \
        --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' --change 'CMD ["python3"]' - "$STANDIN_NAME"
fi
T_base=$(stamp)

"${PODMAN[@]}" build "${BUILD_OPTS[@]}" -f "$REPO/docker/Dockerfile" -t "$IMAGE" "$REPO" 2>&1 | tee "$OUT/build.log" | grep -E '^(STEP|COMMIT|Successfully)' || true
"${PODMAN[@]}" image exists "$IMAGE" || { echo "build failed: $OUT/build.log" >&2; exit 1; }
T_build=$(stamp)
size=$("${PODMAN[@]}" image inspect "$IMAGE" --format '{{.Size}}')
health=$("${PODMAN[@]}" image inspect "$IMAGE" --format '{{json .Config.Healthcheck}}')
app=$("${PODMAN[@]}" run "${RUN_OPTS[@]}" --rm --network none "$IMAGE" ls -A /app | tr '\n' ' ')

echo "== classify in the image vs the x86 venv"
: > "$OUT/classify.jsonl"
for cls in pour golf climb_stairs; do
    clip=$(ls "$SHARED/data/jhmdb/$cls"/*.avi | sort | head -1); rel=${clip#"$SHARED"/}
    img=$("${PODMAN[@]}" run "${RUN_OPTS[@]}" --rm --network none -v "$SHARED:/shared:ro" "$IMAGE" \
          edgevid classify --json --top-k 21 --extractor /shared/models/mobilenet_v2_1.0_224_quant.tflite "/shared/$rel")
    x86=$(EDGEVID_MODEL_DIR=$SHARED/models "$X86_PY" -m edgevid classify --json --top-k 21 \
          --extractor "$SHARED/models/mobilenet_v2_1.0_224_quant.tflite" "$clip")
    printf '{"clip": "%s", "image": %s, "x86": %s}\n' "$rel" "$img" "$x86" >> "$OUT/classify.jsonl"
done
T_classify=$(stamp)

echo "== health check with CURVE on (the daemon bound to 0.0.0.0, as README says for a non-loopback bind)"
work=$(mktemp -d); chmod 755 "$work"
port=$("$X86_PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$X86_PY" - "$work" <<'PY'
import os, sys, zmq.auth
w = sys.argv[1]
for d in ("keys", "authorized"):
    os.makedirs(f"{w}/{d}", exist_ok=True)
zmq.auth.create_certificates(f"{w}/keys", "server")
zmq.auth.create_certificates(f"{w}/keys", "health")
os.rename(f"{w}/keys/health.key", f"{w}/authorized/health.key")
PY
chmod -R a+rX "$work"
clip=$(ls "$SHARED/data/ucf101_sample"/*/*.avi 2>/dev/null | sort | head -1); clip=${clip:-$(ls "$SHARED"/data/ucf101_sample/*.avi | head -1)}
cat > "$work/edgevid.toml" <<TOML
[[sources]]
id = "cam0"
uri = "/shared/${clip#"$SHARED"/}"
loop = true
[publish]
endpoint = "tcp://0.0.0.0:$port"
status_interval = 2.0
curve_secret_key = "/etc/edgevid/keys/server.key_secret"
curve_authorized_keys = "/etc/edgevid/authorized"
TOML
name=edgevid-check-$$
"${PODMAN[@]}" run "${RUN_OPTS[@]}" -d --name "$name" --network host -v "$SHARED:/shared:ro" -v "$SHARED/models:/models:ro" \
    -v "$work:/etc/edgevid:ro" -e EDGEVID_HEALTH_ENDPOINT="tcp://127.0.0.1:$port" \
    -e EDGEVID_HEALTH_CLIENT_KEY=/etc/edgevid/keys/health.key_secret -e EDGEVID_HEALTH_SERVER_KEY=/etc/edgevid/keys/server.key \
    "$IMAGE" >/dev/null
trap '"${PODMAN[@]}" rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
healthy=1
for _ in $(seq 30); do "${PODMAN[@]}" healthcheck run "$name" >/dev/null 2>&1 && { healthy=0; break; }; sleep 2; done
# The same check without the client key must fail: CURVE really keeps it out.
set +e
"${PODMAN[@]}" exec -e EDGEVID_HEALTH_CLIENT_KEY= "$name" edgevid-healthcheck >/dev/null 2>&1; nokey=$?
set -e
"${PODMAN[@]}" logs "$name" > "$OUT/daemon.log" 2>&1 || true
T_health=$(stamp)

"$X86_PY" - "$OUT" "$size" "$healthy" "$nokey" "$health" "$app" "$T_base" "$T_build" "$T_classify" "$T_health" <<'PY'
import json, os, sys
tol = float(os.environ["TOL"])
out, size, healthy, nokey, health, app = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
t = dict(zip(["base", "build", "classify", "health"], map(int, sys.argv[7:11])))
rows = []
for line in open(f"{out}/classify.jsonl"):
    r = json.loads(line)
    a = {s["label"]: s["score"] for s in r["image"]["top"]}
    x = {s["label"]: s["score"] for s in r["x86"]["top"]}
    rows.append({"clip": r["clip"], "top1_image": r["image"]["top"][0], "top1_x86": r["x86"]["top"][0],
                 "max_abs_score_diff": max(abs(a[k] - x[k]) for k in x)})
ok = all(r["top1_image"]["label"] == r["top1_x86"]["label"] and r["max_abs_score_diff"] <= tol for r in rows)
res = {"ok": ok and healthy == 0 and nokey != 0, "arch": os.environ.get("ARCH", "amd64"), "tolerance": tol, "image_bytes": size, "healthcheck_kept": health not in ("null", ""),
       "app_dir": app.split(), "classify": rows, "healthy_with_curve_key": healthy == 0,
       "health_without_key_rc": nokey, "seconds_since_start": t}
json.dump(res, open(f"{out}/result.json", "w"), indent=1)
print(json.dumps(res, indent=1))
sys.exit(0 if res["ok"] else 1)
PY
