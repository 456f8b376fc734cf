"""The shipped extractor path and head run in tflite-runtime too (the fallback runtime, edgevid.runtime).

Needs a second interpreter with tflite-runtime (numpy<2), named by EDGEVID_OTHER_PYTHON; .ci/run
makes one. The two runtimes differ by a few quantization steps, so features are compared by cosine.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

from conftest import HEAD_DIR, MNV2, ROOT, jhmdb_clip

OTHER = os.environ.get("EDGEVID_OTHER_PYTHON")
pytestmark = pytest.mark.skipif(not OTHER, reason="set EDGEVID_OTHER_PYTHON to an interpreter with tflite-runtime")

_CHILD = """
import json, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from edgevid.extractor import Extractor
from edgevid.head import Head
from edgevid.pipeline import clip_features
from edgevid.runtime import backend
e = Extractor(Path({mnv2!r}), num_threads=2)
h = Head(Path({head!r}))
from edgevid.motion import MotionEstimator
cf = clip_features(e, {clip!r}, h.frames, motion=MotionEstimator(h.motion) if h.motion else None)
f = cf.feats
p = h.predict(h.inputs(e.dequantize(f), cf.motion))
print(json.dumps({{"runtime": backend()[0], "batched": e.batched, "feats": f.tolist(), "probs": p.tolist()}}))
"""


def test_extractor_and_shipped_head_agree_across_runtimes(extractor):
    from edgevid.head import Head
    from edgevid.pipeline import clip_features

    clip = str(jhmdb_clip("pour"))
    code = _CHILD.format(root=str(ROOT), mnv2=str(MNV2), head=str(HEAD_DIR), clip=clip)
    proc = subprocess.run([OTHER, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    other = json.loads(proc.stdout.strip().splitlines()[-1])
    assert other["runtime"] == "tflite-runtime"
    # The cut, batchable model there too (edgevid ships the schema; the venv needs `flatbuffers`).
    assert other["batched"] is True, "tflite-runtime fell back to preserve-all-tensors: is flatbuffers installed there?"
    head = Head(HEAD_DIR)
    from edgevid.motion import MotionEstimator

    cf = clip_features(extractor, clip, head.frames, motion=MotionEstimator(head.motion) if head.motion else None)
    mine = cf.feats
    a, b = extractor.dequantize(mine), extractor.dequantize(np.array(other["feats"], np.uint8))
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cos.min() >= 0.99, cos.min()
    probs = head.predict(head.inputs(a, cf.motion))
    assert int(np.argmax(probs)) == int(np.argmax(other["probs"]))
    np.testing.assert_allclose(probs, other["probs"], atol=0.05)
