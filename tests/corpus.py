"""Bad inputs made from real clips: what a camera, a disk or a user can hand edgevid."""

from __future__ import annotations

import io
import struct
import wave
import zipfile
from pathlib import Path

import cv2
import numpy as np

from conftest import DATA, MODELS

AVI = sorted((DATA / "ucf101_sample").rglob("*.avi"))[0]
MP4 = sorted((DATA / "kinetics_sample").glob("*.mp4"))[0]


def _few_frames(path: Path, n: int) -> None:
    cap = cv2.VideoCapture(str(AVI))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (320, 240))
    for _ in range(n):
        ok, frame = cap.read()
        writer.write(cv2.resize(frame, (320, 240)))
    writer.release()
    cap.release()


def _huge_header(data: bytes) -> bytes:
    b = bytearray(data)
    avih = b.find(b"avih")
    struct.pack_into("<II", b, avih + 8 + 32, 60000, 60000)
    strf = b.find(b"strf")
    struct.pack_into("<ii", b, strf + 12, 60000, 60000)
    return bytes(b)


def _wav() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((np.sin(np.arange(16000) / 5) * 3000).astype("<i2").tobytes())
    return buf.getvalue()


def make_corpus(folder: Path, seed: int = 0) -> dict[str, Path]:
    """Write every case into ``folder``; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    avi, mp4 = AVI.read_bytes(), MP4.read_bytes()
    cases: dict[str, bytes | None] = {}
    for frac in (0.001, 0.01, 0.1, 0.5, 0.9, 0.99):
        cases[f"truncated_avi_{frac}.avi"] = avi[: int(len(avi) * frac)]
        cases[f"truncated_mp4_{frac}.mp4"] = mp4[: int(len(mp4) * frac)]
    for i in range(6):
        for name, data in (("avi", avi), ("mp4", mp4)):
            b = np.frombuffer(data, np.uint8).copy()
            pos = rng.integers(0, len(b), size=int(rng.integers(1, 200)))
            b[pos] ^= rng.integers(1, 256, size=len(pos)).astype(np.uint8)
            cases[f"flipped_{name}_{i}.{name}"] = b.tobytes()
    cases["mp4_named.avi"] = mp4
    cases["avi_named.mp4"] = avi
    cases["zero_length.avi"] = b""
    cases["huge_resolution_header.avi"] = _huge_header(avi)
    cases["audio_only.wav.avi"] = _wav()
    cases["image.png.avi"] = cv2.imencode(".png", np.zeros((64, 64, 3), np.uint8))[1].tobytes()
    cases["model.tflite.mp4"] = (MODELS / "mobilenet_v2_1.0_224_quant.tflite").read_bytes()[:200000]
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as z:
        z.writestr("clip.avi", avi[:5000])
    cases["archive.zip.avi"] = zbuf.getvalue()
    cases["text.avi"] = b"#!/bin/sh\necho not a video\n" * 100
    cases["random_noise.mp4"] = rng.integers(0, 256, 50000, dtype=np.uint8).tobytes()
    paths = {}
    for name, data in cases.items():
        (folder / name).write_bytes(data)
        paths[name] = folder / name
    for n in (1, 2, 3):
        _few_frames(folder / f"frames_{n}.avi", n)
        paths[f"frames_{n}.avi"] = folder / f"frames_{n}.avi"
    return paths
