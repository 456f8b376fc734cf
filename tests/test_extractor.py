"""The extractor returns MobileNetV2's real pre-logits, safely, batched or not."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgevid.errors import ModelError
from edgevid.extractor import Extractor
from edgevid.runtime import make_interpreter

from conftest import MNV2, MODELS, V3SMALL, jhmdb_clip


def _imagenet_classifier():
    """The model's own final 1x1 conv (weights + bias), read as constants from the full model."""
    full = make_interpreter(MNV2)
    t = {d["name"]: d for d in full.get_tensor_details()}
    w = t["MobilenetV2/Logits/Conv2d_1c_1x1/weights_quant/FakeQuantWithMinMaxVars"]
    b = t["MobilenetV2/Logits/Conv2d_1c_1x1/Conv2D_bias"]
    weights = (full.get_tensor(w["index"]).astype(np.float32) - w["quantization"][1]) * w["quantization"][0]
    bias = full.get_tensor(b["index"]).astype(np.float32) * b["quantization"][0]
    return weights.reshape(1001, -1), bias


def test_features_are_the_prelogits_that_classify_imagenet(extractor):
    labels = (MODELS / "labels_mobilenet_quant_v1_224.txt").read_text().splitlines()
    weights, bias = _imagenet_classifier()
    images = [cv2.imread(str(MODELS.parent / "images" / f"{n}.bmp")) for n in ("grace_hopper", "cat")]
    feats = extractor.dequantize(extractor.extract(extractor.preprocess(images)))
    assert feats.shape == (2, 1280)
    assert feats.min() >= 0 and feats.max() <= 6.0 + 1e-6  # ReLU6 range, scale 6/255
    top1 = [labels[i] for i in (feats @ weights.T + bias).argmax(1)]
    assert top1 == ["military uniform", "Egyptian cat"]


def test_features_equal_the_avgpool_tensor_of_the_uncut_model(extractor):
    """Cutting the graph must not change the numbers: compare with preserve_all_tensors."""
    full = make_interpreter(MNV2, preserve_all_tensors=True)
    avgpool = next(d for d in full.get_tensor_details() if d["name"] == "MobilenetV2/Logits/AvgPool")
    img = cv2.imread(str(MODELS.parent / "images" / "cat.bmp"))
    batch = extractor.preprocess([img])
    full.set_tensor(full.get_input_details()[0]["index"], batch)
    full.invoke()
    ref = full.get_tensor(avgpool["index"]).reshape(-1)
    np.testing.assert_array_equal(extractor.extract(batch)[0], ref)


def test_batched_extraction_matches_one_frame_at_a_time(extractor):
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (5, 224, 224, 3), dtype=np.uint8)
    together = extractor.extract(batch)
    alone = np.concatenate([extractor.extract(batch[i : i + 1]) for i in range(5)])
    np.testing.assert_array_equal(together, alone)
    assert extractor.batched


def test_one_frame_invokes_run_on_one_thread_with_the_features_of_the_pool(extractor):
    """A one-frame invoke uses a one-thread interpreter (no spinning pool around it), a batch the
    N-thread one; on real frames both give exactly the features of a one-thread extractor."""
    from edgevid.capture import read_clip

    batch = extractor.preprocess(read_clip(jhmdb_clip("wave"), 19).frames)
    one_thread = Extractor(MNV2, num_threads=1)
    reference = one_thread.extract(batch)
    np.testing.assert_array_equal(
        np.concatenate([extractor.extract(batch[i : i + 1]) for i in range(len(batch))]), reference
    )
    np.testing.assert_array_equal(extractor.extract(batch), reference)  # 16 + 3 frames on two threads
    assert sorted(extractor._pool) == [1, 2] and list(one_thread._pool) == [1]


def test_preprocess_is_rgb_bilinear_224(extractor):
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[..., 0] = 255  # pure blue in OpenCV's BGR
    out = extractor.preprocess([frame])[0]
    assert out.shape == (224, 224, 3)
    assert (out[..., 2] == 255).all() and (out[..., :2] == 0).all()


def test_mobilenet_v3_small_gives_1024d_prelogits():
    e = Extractor(V3SMALL, num_threads=1)
    assert e.feature_tensor == "MobilenetV3/Logits/AvgPool" and e.feature_dim == 1024


@pytest.mark.parametrize("content", [b"", b"not a model at all" * 100])
def test_unreadable_model_is_a_clear_error(tmp_path, content):
    bad = tmp_path / "garbage.tflite"
    bad.write_bytes(content)
    with pytest.raises(ModelError, match="garbage.tflite"):
        Extractor(bad)


def test_missing_model_names_the_fetch_command(tmp_path):
    with pytest.raises(ModelError, match="models fetch"):
        Extractor(tmp_path / "absent.tflite")


def test_fast_preprocess_equals_resize_then_channel_flip(extractor):
    from edgevid.capture import read_clip

    from conftest import jhmdb_clip

    frames = read_clip(jhmdb_clip("golf"), 25).frames
    expected = np.stack([cv2.resize(f, (224, 224), interpolation=cv2.INTER_LINEAR)[..., ::-1] for f in frames])
    np.testing.assert_array_equal(extractor.preprocess(frames), expected)


def test_cut_model_is_cached_for_start_up_and_a_tampered_cache_is_ignored(tmp_path, monkeypatch):
    """The second load reuses the cut (no flatbuffer rewrite, one interpreter) and gives the same features."""
    import hashlib

    from edgevid.featuremodel import _cut_file

    monkeypatch.setenv("EDGEVID_CACHE_DIR", str(tmp_path))
    frames = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    first = Extractor(MNV2, num_threads=1)
    cut = _cut_file(first.sha256, None)
    assert cut.is_file() and cut.with_suffix(".sha256").is_file()
    again = Extractor(MNV2, num_threads=1)
    assert (again.feature_tensor, again.feature_dim, again.scale, again.zero_point, again.input_size) == (
        first.feature_tensor,
        first.feature_dim,
        first.scale,
        first.zero_point,
        first.input_size,
    )
    np.testing.assert_array_equal(again.extract(frames), first.extract(frames))
    cut.write_bytes(cut.read_bytes()[:-100] + bytes(100))  # damaged: its recorded sha256 no longer matches
    np.testing.assert_array_equal(Extractor(MNV2, num_threads=1).extract(frames), first.extract(frames))
    assert cut.with_suffix(".sha256").read_text() == hashlib.sha256(cut.read_bytes()).hexdigest()  # cut again
