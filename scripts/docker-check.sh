#!/usr/bin/env bash
# Build docker/Dockerfile with podman and check the image: classify scores equal the x86 venv's,
# the health check passes with CURVE on (and fails without the health key), and the default CMD's
# `models fetch` fills an empty /models volume from EDGEVID_MODEL_MIRROR (a server on the host),
# then, restarted offline on that volume, keeps the file. Results: $OUT/result.json.
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
for cls in pour golf climb_stairs; do  # sed, not head: head exiting early can SIGPIPE sort (pipefail: exit 141)
    clip=$(ls "$SHARED/data/jhmdb/$cls"/*.avi | sort | sed -n 1p); rel=${clip#"$SHARED"/}
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
clip=$(ls "$SHARED/data/ucf101_sample"/*/*.avi 2>/dev/null | sort | sed -n 1p); clip=${clip:-$(ls "$SHARED"/data/ucf101_sample/*.avi | head -1)}
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
name=edgevid-check-$$ vol=edgevid-check-models-$$ mirror=$(mktemp -d) mirror_pid=
cleanup() {
    for n in "$name" "$name-fetch" "$name-offline"; do "${PODMAN[@]}" rm -f "$n" >/dev/null 2>&1 || true; done
    "${PODMAN[@]}" volume rm -f "$vol" >/dev/null 2>&1 || true
    [ -z "$mirror_pid" ] || kill "$mirror_pid" 2>/dev/null || true
    rm -rf "$work" "$mirror"
}
trap cleanup EXIT
run_daemon() {  # NAME [podman run options]: the image's default CMD (models fetch, then edgevid run)
    local n=$1; shift
    "${PODMAN[@]}" run "${RUN_OPTS[@]}" -d --name "$n" -v "$SHARED:/shared:ro" -v "$work:/etc/edgevid:ro" \
        -e EDGEVID_HEALTH_ENDPOINT="tcp://127.0.0.1:$port" \
        -e EDGEVID_HEALTH_CLIENT_KEY=/etc/edgevid/keys/health.key_secret -e EDGEVID_HEALTH_SERVER_KEY=/etc/edgevid/keys/server.key \
        "$@" "$IMAGE" >/dev/null
}
wait_healthy() {  # NAME: 0 once podman's health check passes (up to ~60 s), 1 if it never does or the container exits
    for _ in $(seq 30); do
        "${PODMAN[@]}" healthcheck run "$1" >/dev/null 2>&1 && return 0
        [ "$("${PODMAN[@]}" inspect "$1" --format '{{.State.Running}}')" = true ] || return 1
        sleep 2
    done
    return 1
}
one_prediction() {  # NAME: one message from the bundled head (pred/cam0), as JSON, through CURVE
    "${PODMAN[@]}" exec "$1" edgevid subscribe --json --endpoint "tcp://127.0.0.1:$port" --topic pred/cam0 --count 1 \
        --timeout 30 --curve-secret-key /etc/edgevid/keys/health.key_secret --curve-server-key /etc/edgevid/keys/server.key \
        2>/dev/null || echo null
}
run_daemon "$name" --network host -v "$SHARED/models:/models:ro"
healthy=1
wait_healthy "$name" && healthy=0
# The same check without the client key must fail: CURVE really keeps it out.
set +e
"${PODMAN[@]}" exec -e EDGEVID_HEALTH_CLIENT_KEY= "$name" edgevid-healthcheck >/dev/null 2>&1; nokey=$?
set -e
"${PODMAN[@]}" logs "$name" > "$OUT/daemon.log" 2>&1 || true
"${PODMAN[@]}" rm -f "$name" >/dev/null
T_health=$(stamp)

echo "== default CMD, empty /models volume, EDGEVID_MODEL_MIRROR at a server on the host (host network)"
# The mirror serves the checked file at the official Coral path: https://HOST/PATH as $MIRROR/HOST/PATH.
coral=$("$X86_PY" -c 'from edgevid.store import EXTRACTORS as E, DEFAULT_EXTRACTOR as D; print(E[D].sources[0].url.split("://", 1)[1])')
mkdir -p "$mirror/$(dirname "$coral")"; chmod -R a+rX "$mirror"
ln -s "$SHARED/models/mobilenet_v2_1.0_224_quant.tflite" "$mirror/$coral"
mport=$("$X86_PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$X86_PY" -m http.server --bind 127.0.0.1 --directory "$mirror" "$mport" >/dev/null 2> "$OUT/mirror.log" & mirror_pid=$!
for _ in $(seq 50); do "$X86_PY" -c "import socket; socket.create_connection(('127.0.0.1', $mport), 1)" 2>/dev/null && break; sleep 0.2; done
"${PODMAN[@]}" volume create "$vol" >/dev/null
vol_dir=$("${PODMAN[@]}" volume inspect "$vol" --format '{{.Mountpoint}}')
ls -A "$vol_dir" > "$OUT/volume-before.txt"
run_daemon "$name-fetch" --network host -v "$vol:/models" -e EDGEVID_MODEL_MIRROR="http://127.0.0.1:$mport"
fetch_healthy=1
wait_healthy "$name-fetch" && fetch_healthy=0
one_prediction "$name-fetch" > "$OUT/fetch-prediction.json"
"${PODMAN[@]}" logs "$name-fetch" > "$OUT/fetch-mirror.log" 2>&1 || true
vol_sha=$(sha256sum "$vol_dir/mobilenet_v2_1.0_224_quant.tflite" 2>/dev/null | cut -d' ' -f1) || vol_sha=none
"${PODMAN[@]}" rm -f "$name-fetch" >/dev/null
kill "$mirror_pid"; wait "$mirror_pid" 2>/dev/null || true; mirror_pid=
T_fetch=$(stamp)

echo "== restarted on the same volume, offline: no network, EDGEVID_MODEL_MIRROR at a closed port"
cport=$("$X86_PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
run_daemon "$name-offline" --network none -v "$vol:/models" -e EDGEVID_MODEL_MIRROR="http://127.0.0.1:$cport"
offline_healthy=1
wait_healthy "$name-offline" && offline_healthy=0
one_prediction "$name-offline" > "$OUT/offline-prediction.json"
"${PODMAN[@]}" logs "$name-offline" > "$OUT/fetch-offline.log" 2>&1 || true
"${PODMAN[@]}" rm -f "$name-offline" >/dev/null
T_offline=$(stamp)

"$X86_PY" - "$OUT" "$size" "$healthy" "$nokey" "$health" "$app" "$T_base" "$T_build" "$T_classify" "$T_health" "$T_fetch" "$T_offline" \
    "$fetch_healthy" "$offline_healthy" "$vol_sha" "$mport" "$cport" <<'PY'
import json, os, sys
tol = float(os.environ["TOL"])
out, size, healthy, nokey, health, app = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
t = dict(zip(["base", "build", "classify", "health", "fetch_from_mirror", "offline_restart"], map(int, sys.argv[7:13])))
fetch_healthy, offline_healthy, vol_sha, mport, cport = int(sys.argv[13]) == 0, int(sys.argv[14]) == 0, sys.argv[15], sys.argv[16], sys.argv[17]
SHA = "09949bf5b07f073f83a8c6ff9a59cced07e06f3822d41735e17f399be41db2fc"
TARGET = "/models/mobilenet_v2_1.0_224_quant.tflite"
def fetch_lines(log):  # what `edgevid models fetch` (and any edgevid error) printed at start
    return [l.rstrip() for l in open(f"{out}/{log}") if l.startswith(("mobilenet_v2_1.0_224_quant: ", "edgevid: "))]
def prediction(name):
    p = json.load(open(f"{out}/{name}"))
    return p and {k: p[k] for k in ("label", "score", "models", "frames")}
mirror_lines = fetch_lines("fetch-mirror.log")
offline_lines = fetch_lines("fetch-offline.log")
requests = [l.split('"')[1] + " " + l.split('"')[2].split()[0] for l in open(f"{out}/mirror.log") if l.count('"') >= 2]
fetch = {"mirror": f"http://127.0.0.1:{mport}", "volume_before": open(f"{out}/volume-before.txt").read().split(),
         "mirror_requests": requests, "fetch_lines": mirror_lines, "healthy": fetch_healthy,
         "volume_extractor_sha256": vol_sha, "prediction": prediction("fetch-prediction.json")}
fetch["ok"] = (fetch_healthy and vol_sha == SHA and not fetch["volume_before"] and fetch["prediction"] is not None
               and SHA.startswith(fetch["prediction"]["models"]["extractor"] or "-")
               and any(l.startswith(f"mobilenet_v2_1.0_224_quant: installed {TARGET} from http://127.0.0.1:{mport}/raw.githubusercontent.com/")
                       for l in mirror_lines))
offline = {"network": "none", "mirror": f"http://127.0.0.1:{cport}", "fetch_lines": offline_lines, "healthy": offline_healthy,
           "prediction": prediction("offline-prediction.json")}
offline["ok"] = (offline_healthy and offline["prediction"] is not None
                 and any(l.startswith(f"mobilenet_v2_1.0_224_quant: already installed {TARGET}") for l in offline_lines))
rows = []
for line in open(f"{out}/classify.jsonl"):
    r = json.loads(line)
    a = {s["label"]: s["score"] for s in r["image"]["top"]}
    x = {s["label"]: s["score"] for s in r["x86"]["top"]}
    rows.append({"clip": r["clip"], "top1_image": r["image"]["top"][0], "top1_x86": r["x86"]["top"][0],
                 "max_abs_score_diff": max(abs(a[k] - x[k]) for k in x)})
ok = all(r["top1_image"]["label"] == r["top1_x86"]["label"] and r["max_abs_score_diff"] <= tol for r in rows)
res = {"ok": ok and healthy == 0 and nokey != 0 and fetch["ok"] and offline["ok"], "arch": os.environ.get("ARCH", "amd64"),
       "tolerance": tol, "image_bytes": size, "healthcheck_kept": health not in ("null", ""),
       "app_dir": app.split(), "classify": rows, "healthy_with_curve_key": healthy == 0,
       "health_without_key_rc": nokey, "fetch_from_mirror_ok": fetch["ok"], "offline_restart_ok": offline["ok"],
       "fetch_from_mirror": fetch, "offline_restart": offline, "seconds_since_start": t}
json.dump(res, open(f"{out}/result.json", "w"), indent=1)
print(json.dumps(res, indent=1))
sys.exit(0 if res["ok"] else 1)
PY
