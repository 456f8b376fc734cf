"""Extractor identity by measurement, and `models fetch` against a real HTTP server on loopback.

The official sources are reached through EDGEVID_MODEL_MIRROR (``https://host/path`` is fetched
as ``$MIRROR/host/path``), so the real download path runs, source order and all, without the
internet: the server serves the official paths with the bytes each case needs.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from edgevid.errors import ModelError
from edgevid.extractor import Extractor
from edgevid.fingerprint import PROBE_SET, check, probe_images
from edgevid.head import Head
from edgevid.store import EXTRACTORS, mirrored
from tools.fingerprint import altered_weights
from tools.probe import free_port

from conftest import HEAD_DIR, MNV2, MODELS, ROOT, V3SMALL, jhmdb_clip, run_cli

CORAL = MODELS / "variants" / "mobilenet_v2_1.0_224_quant.coral-2021.tflite"
TF2 = MODELS / "variants" / "tf2_mobilenet_v2_1.0_224_ptq.tflite"
SPEC = EXTRACTORS["mobilenet_v2_1.0_224_quant"]
CORAL_URL, TF_URL = (d.url for d in SPEC.sources)
CLIP = jhmdb_clip("pour")


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[1]


def tgz(member: bytes, name: str = "mobilenet_v2_1.0_224_quant.tflite") -> bytes:
    """An archive laid out as TensorFlow's (the .tflite beside other files)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for n, data in ((f"./{name}", member), ("./mobilenet_v2_1.0_224_quant_info.txt", b"info\n")):
            info = tarfile.TarInfo(n)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Server:
    """A loopback HTTP server; ``routes[path] = (mode, body)``, mode in ok / truncate / slow."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[str, bytes]] = {}
        self.hits: list[str] = []
        routes, hits = self.routes, self.hits

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):
                hits.append(self.path)
                if self.path not in routes:
                    self.send_error(404)
                    return
                mode, body = routes[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    if mode == "truncate":
                        self.wfile.write(body[: len(body) // 3])
                    elif mode == "slow":
                        for i in range(0, len(body), 4096):
                            self.wfile.write(body[i : i + 4096])
                            self.wfile.flush()
                            time.sleep(0.05)
                    else:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def fetch(server_url: str, model_dir: Path, *extra: str, timeout: float = 300):
    env = {
        "EDGEVID_MODEL_MIRROR": server_url,
        "EDGEVID_MODEL_DIR": str(model_dir),
        "EDGEVID_CACHE_DIR": str(model_dir.parent / "cache"),
    }
    return run_cli("models", "fetch", *extra, env=env, timeout=timeout)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _no_temp_files(folder: Path) -> bool:
    return not folder.exists() or not [p for p in folder.iterdir() if p.name.startswith(".")]


# -- the probe images and the fingerprint ----------------------------------------------------------------
def test_probe_images_are_the_same_pixels_everywhere():
    """The manifest's fingerprint answers these exact images: a change to them (or to how numpy
    computes them) would refuse every extractor, so their bytes are pinned."""
    probes = probe_images()
    assert probes.shape == (8, 224, 224, 3) and probes.dtype.name == "uint8"
    assert hashlib.sha256(probes.tobytes()).hexdigest() == PINNED_PROBES
    assert len({hashlib.sha256(p.tobytes()).hexdigest() for p in probes}) == 8
    assert all(30 < p.std() for p in probes)  # structure, not flat colour
    assert json.loads((HEAD_DIR / "manifest.json").read_text())["extractor"]["fingerprint"]["probes"] == PROBE_SET


PINNED_PROBES = "56f1cbd066f87181668baa410c400efa03563fb9c13af194280bd05f066b5c17"


def test_head_accepts_its_checkpoint_by_features_and_refuses_other_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEVID_CACHE_DIR", str(tmp_path / "cache"))
    head = Head(HEAD_DIR)
    assert head.check_extractor(Extractor(MNV2)) == "the file the head was checked with"
    coral = Extractor(CORAL)
    assert coral.sha256 not in head.manifest.extractor.sha256
    assert "features match" in head.check_extractor(coral)
    # Remembered by sha256: the probes are not run again for that file.
    assert len(list((tmp_path / "cache" / "checked").glob(f"{coral.sha256[:32]}-*.json"))) == 1
    altered = tmp_path / MNV2.name  # same name, graph, tensor names and shapes: other weights
    altered.write_bytes(altered_weights(MNV2.read_bytes(), step=1, every=50))
    with pytest.raises(ModelError, match=r"does not give the features of mobilenet_v2_1.0_224_quant .*needs ≥ 0.97"):
        head.check_extractor(Extractor(altered))
    assert not list((tmp_path / "cache" / "checked").glob(f"{_sha(altered)[:32]}-*.json"))  # refusals are not kept


def test_a_different_network_of_the_same_shape_gives_other_features():
    """The Keras MobileNetV2 (other weights, 1280-d pooled features): its features on the probes
    are far from the head's fingerprint, whatever its tensor names."""
    from tools.fingerprint import TF2_FEATURES, _tensor

    head = Head(HEAD_DIR)
    tf2 = Extractor(TF2, feature_tensor=_tensor(TF2, TF2_FEATURES))
    assert tf2.feature_dim == 1280
    result = check(head.manifest.extractor.fingerprint, tf2)
    assert not result.ok and max(result.cosines) < 0.9


def test_classify_with_the_reconverted_checkpoint_gives_the_same_answer(model_dir):
    ours = run_cli("classify", str(CLIP), "--json", env={"EDGEVID_MODEL_DIR": str(model_dir)})
    theirs = run_cli("classify", str(CLIP), "--json", "--extractor", str(CORAL))
    assert ours.returncode == 0 and theirs.returncode == 0, theirs.stderr
    a, b = json.loads(ours.stdout)["top"], json.loads(theirs.stdout)["top"]
    assert a[0]["label"] == b[0]["label"] == "pour" and abs(a[0]["score"] - b[0]["score"]) < 0.05


@pytest.mark.parametrize("extractor,needle", [(TF2, "no tensor named"), ("v3", "1024-d")])
def test_classify_refuses_other_networks_in_one_line(tmp_path, extractor, needle):
    if extractor == "v3":  # MobileNetV3-Small renamed as MobileNetV2
        extractor = tmp_path / MNV2.name
        shutil.copy(V3SMALL, extractor)
    proc = run_cli("classify", str(CLIP), "--extractor", str(extractor))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("edgevid: error:")] == [proc.stderr.strip()]
    assert needle in proc.stderr


# -- models fetch: the real download path against a local server ---------------------------------------
def test_default_source_serves_the_checked_file_then_fetch_is_idempotent_offline(server, tmp_path):
    server.routes[_path(CORAL_URL)] = ("ok", MNV2.read_bytes())
    models = tmp_path / "m"
    proc = fetch(server.url, models)
    assert proc.returncode == 0, proc.stderr
    assert _sha(models / MNV2.name) == _sha(MNV2) and server.hits == [_path(CORAL_URL)]
    assert "the file head jhmdb-split1-stats_m_x5 was checked with" in proc.stdout
    # Installed and verified: no network at all (the mirror now points at nothing).
    again = fetch(f"http://127.0.0.1:{free_port()}", models)
    assert again.returncode == 0 and "already installed" in again.stdout, again.stderr
    proc = run_cli("classify", str(CLIP), env={"EDGEVID_MODEL_DIR": str(models)})
    assert proc.returncode == 0 and proc.stdout.split(": ")[1].startswith("pour"), proc.stderr


def test_tensorflow_archive_is_the_second_source_accepted_by_features(server, tmp_path):
    """Coral's copy is gone (404); TensorFlow's archive holds another conversion of the checkpoint
    (other bytes): installed because its features match the head's fingerprint, and it works."""
    server.routes[_path(TF_URL)] = ("ok", tgz(CORAL.read_bytes()))
    models = tmp_path / "m"
    proc = fetch(server.url, models)
    assert proc.returncode == 0, proc.stderr
    assert server.hits == [_path(CORAL_URL), _path(TF_URL)]
    assert _sha(models / MNV2.name) == _sha(CORAL) and "features match head" in proc.stdout
    verify = run_cli("models", "verify", env={"EDGEVID_MODEL_DIR": str(models)})
    assert verify.returncode == 0 and "FAILED" not in verify.stdout
    out = run_cli("classify", str(CLIP), env={"EDGEVID_MODEL_DIR": str(models)})
    assert out.returncode == 0 and out.stdout.split(": ")[1].startswith("pour"), out.stderr


def test_wrong_bytes_from_every_source_install_nothing(server, tmp_path):
    server.routes[_path(CORAL_URL)] = ("ok", os.urandom(200_000))
    server.routes[_path(TF_URL)] = ("ok", tgz(altered_weights(MNV2.read_bytes())))
    models = tmp_path / "m"
    proc = fetch(server.url, models)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    err = proc.stderr.strip()
    assert err.count("\n") == 0 and err.startswith("edgevid: error: cannot install mobilenet_v2_1.0_224_quant")
    assert "not a TFLite model" in err and "does not give the features head" in err and "--from" in err
    assert not (models / MNV2.name).exists() and _no_temp_files(models)


def test_a_good_install_is_never_replaced_by_a_bad_download(server, tmp_path):
    models = tmp_path / "m"
    assert fetch(server.url, models, "--from", str(CORAL)).returncode == 0
    damaged = bytearray((models / MNV2.name).read_bytes())
    damaged[len(damaged) // 2 : len(damaged) // 2 + 5000] = bytes(5000)  # a damaged install is fetched again
    (models / MNV2.name).write_bytes(bytes(damaged))
    server.routes[_path(CORAL_URL)] = ("truncate", MNV2.read_bytes())
    proc = fetch(server.url, models)
    assert proc.returncode == 1 and "truncated" in proc.stderr and "HTTP 404" in proc.stderr
    assert (models / MNV2.name).read_bytes() == bytes(damaged) and _no_temp_files(models)  # untouched, no partial file


def test_slow_refused_and_offline_sources_are_one_line_each(server, tmp_path):
    server.routes[_path(CORAL_URL)] = ("slow", MNV2.read_bytes())  # 3.5 MB at 80 kB/s
    proc = fetch(server.url, tmp_path / "m", "--timeout", "2")
    assert proc.returncode == 1 and "too slow" in proc.stderr and "--timeout" in proc.stderr
    refused = fetch(f"http://127.0.0.1:{free_port()}", tmp_path / "m")
    assert refused.returncode == 1 and "refused" in refused.stderr.lower() and refused.stderr.count("\n") == 1
    assert not (tmp_path / "m" / MNV2.name).exists()
    bad = run_cli("models", "fetch", env={"EDGEVID_MODEL_MIRROR": "ftp://x", "EDGEVID_MODEL_DIR": str(tmp_path / "m")})
    assert bad.returncode == 2 and "EDGEVID_MODEL_MIRROR" in bad.stderr


def test_mirror_maps_official_urls_under_their_host(monkeypatch):
    monkeypatch.setenv("EDGEVID_MODEL_MIRROR", "http://mirror.local/models/")
    assert (
        mirrored(CORAL_URL) == "http://mirror.local/models/raw.githubusercontent.com/google-coral/edgetpu/"
        "75e675633c2110a991426c8afa64f122b16ac372/test_data/mobilenet_v2_1.0_224_quant.tflite"
    )
    monkeypatch.delenv("EDGEVID_MODEL_MIRROR")
    assert mirrored(TF_URL) == TF_URL


def test_fetch_from_a_variant_file_and_a_wrong_network(tmp_path):
    env = {"EDGEVID_MODEL_DIR": str(tmp_path / "m")}
    ok = run_cli("models", "fetch", "--from", str(CORAL), env=env)
    assert ok.returncode == 0 and "features match" in ok.stdout, ok.stderr
    bad = run_cli("models", "fetch", "--from", str(TF2), env=env)
    assert (
        bad.returncode == 1
        and "is not head jhmdb-split1-stats_m_x5's extractor" in bad.stderr
        and ".tmp" not in bad.stderr
    )
    assert _sha(tmp_path / "m" / MNV2.name) == _sha(CORAL)  # the good one stays


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="systemd/install.sh runs as root")
def test_install_script_ends_with_a_working_head_from_the_download(server, tmp_path):
    """README's Pi path: install.sh into folders of the test's own (venv, link, config, models,
    unit), the extractor downloaded from the default source (served here), `config check` passes."""
    server.routes[_path(CORAL_URL)] = ("ok", MNV2.read_bytes())
    dirs = {k: tmp_path / k.lower() for k in ("PREFIX", "CONF_DIR", "MODEL_DIR", "UNIT_DIR")}
    env = {
        **os.environ,
        **{k: str(v) for k, v in dirs.items()},
        "BIN_LINK": str(tmp_path / "edgevid"),
        "NO_START": "1",
        "EDGEVID_MODEL_MIRROR": server.url,
        "EDGEVID_CACHE_DIR": str(tmp_path / "cache"),
    }
    dirs["UNIT_DIR"].mkdir()
    proc = subprocess.run(
        ["sh", str(ROOT / "systemd" / "install.sh")], env=env, capture_output=True, text=True, timeout=1200
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert _sha(dirs["MODEL_DIR"] / MNV2.name) == _sha(MNV2) and server.hits == [_path(CORAL_URL)]
    out = subprocess.run(
        [str(tmp_path / "edgevid"), "classify", str(CLIP)],
        env={**env, "EDGEVID_MODEL_DIR": str(dirs["MODEL_DIR"])},
        capture_output=True,
        text=True,
        timeout=300,
    )  # as the unit runs it
    assert out.returncode == 0 and out.stdout.split(": ")[1].startswith("pour"), out.stderr
    # Run again (an upgrade): the installed extractor is kept, nothing is downloaded.
    server.hits.clear()
    again = subprocess.run(
        ["sh", str(ROOT / "systemd" / "install.sh")], env=env, capture_output=True, text=True, timeout=1200
    )
    assert again.returncode == 0 and server.hits == [], again.stderr[-2000:]
