"""Workstation tools on real data: dataset readers, feature cache, conversion, label order."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import DATA, MNV2, ROOT, V3SMALL, jhmdb_subset

pytest.importorskip("sklearn", reason="tools dependencies not installed (pip install -e ./tools)")

from edgevid.extractor import Extractor  # noqa: E402
from edgevid.manifest import sha256_file  # noqa: E402
from edgevid.pipeline import clip_features  # noqa: E402
from tools.datasets import DatasetError, group_of, read_folders, read_jhmdb, read_ucf101  # noqa: E402
from tools.features import cache_path, extract_dataset, load_cached  # noqa: E402
from tools.probe import run_group  # noqa: E402

JHMDB, JSPLITS, USPLITS = DATA / "jhmdb", DATA / "jhmdb_splits", DATA / "ucf101_splits"


def test_jhmdb_split1_accounts_for_every_clip():
    ds = read_jhmdb(JHMDB, JSPLITS, 1)
    placed = len(ds.train) + len(ds.val) + len(ds.test)
    assert len(ds.classes) == 21 and placed == 928
    assert len(ds.test) == 259
    remapped = [p for p in ds.problems if "listed as" in p]
    assert len(remapped) == 6 and any("LearnToShootFromTheMaster" in p for p in remapped)
    assert not {i.group for i in ds.train} & {i.group for i in ds.val}  # validation holds out whole sources
    # A source video is one group whatever the action, so it never straddles train and validation.
    assert group_of(JHMDB / "catch" / "Faith_Rewarded_catch_f_cm_np1_fr_med_10.avi") == "Faith_Rewarded"
    assert (
        group_of(JHMDB / "swing_baseball" / "Faith_Rewarded_swing_baseball_f_nm_np1_ba_bad_22.avi") == "Faith_Rewarded"
    )
    sources = [{i.group for i in part} for part in (ds.train, ds.val)]
    assert len(ds.val) == 121 and not sources[0] & sources[1]
    # The official split itself keeps sources apart only within an action: 58 of 259 test clips share one with training.
    assert sum(i.group in sources[0] | sources[1] for i in ds.test) == 58


@pytest.mark.parametrize("split", [2, 3])
def test_jhmdb_other_splits_report_unused_clips(split):
    ds = read_jhmdb(JHMDB, JSPLITS, split)
    unused = next(p for p in ds.problems if "unused" in p)
    n_unused = int(unused.split()[0])
    assert 160 <= n_unused <= 180
    assert len(ds.train) + len(ds.val) + len(ds.test) + n_unused == 928


def test_jhmdb_hash_and_at_names_are_matched():
    ds = read_jhmdb(JHMDB, JSPLITS, 1)
    names = {i.path.name for i in ds.train + ds.val + ds.test}
    assert any("@" in n for n in names)  # listed with '#' or '&' in the HMDB files


def test_ucf101_official_lists_crlf_and_handstand_spelling(tmp_path):
    # A UCF101 tree whose HandstandPushups folder holds one clip under its listed name (a link to a real clip).
    root = tmp_path / "ucf"
    (root / "HandstandPushups").mkdir(parents=True)
    listed = next(
        line.split()[0]
        for line in (USPLITS / "trainlist01.txt").read_text().splitlines()
        if line.startswith("HandstandPushups/")
    )
    (root / "HandstandPushups" / listed.split("/")[1]).symlink_to(sorted((DATA / "ucf101_sample").rglob("*.avi"))[0])
    ds = read_ucf101(root, USPLITS, 1)
    # Classes come from the clips present: a subset never gives a 101-class head; the rest are noted.
    assert ds.classes == ["HandstandPushups"] and ds.name == "ucf-split1"
    assert ds.problems[0].startswith("100 listed classes have no clips here") and "ApplyEyeMakeup" in ds.problems[0]
    found = ds.train + ds.val
    assert "HandStandPushups" in listed  # the file name's spelling differs from the class folder's
    assert len(found) == 1 and ds.classes[found[0].label] == "HandstandPushups"
    assert any("absent" in p for p in ds.problems)


def test_ucf101_sample_test_clips_keep_official_labels():
    ds = read_ucf101(DATA / "ucf101_sample", USPLITS, 1)
    for item in ds.train + ds.val + ds.test:
        assert ds.classes[item.label].lower() == item.path.parent.name.lower()


def test_folder_dataset_never_splits_a_group():
    ds = read_folders(DATA / "ucf101_sample", seed=3)
    sides = [{i.group for i in part} for part in (ds.train, ds.val, ds.test)]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert group_of(DATA / "x" / "v_Biking_g05_c02.avi") == "biking_g05"


def test_dataset_errors_are_clear(tmp_path):
    (tmp_path / "walk").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "walk" / "a.avi").write_bytes(b"x")
    with pytest.raises(DatasetError, match="run"):
        read_folders(tmp_path)
    with pytest.raises(DatasetError, match="test_split1"):
        read_jhmdb(JHMDB, tmp_path, 1)
    bad = tmp_path / "splits"
    bad.mkdir()
    (bad / "walk_test_split1.txt").write_text("clip.avi 7\n")
    with pytest.raises(DatasetError, match="walk_test_split1.txt:1"):
        read_jhmdb(JHMDB, bad, 1)


@pytest.fixture(scope="module")
def small_clips():
    return [sorted((JHMDB / c).glob("*.avi"))[i] for c in ("wave", "pour") for i in range(2)]


def test_cache_holds_the_exact_deploy_features_and_resumes(tmp_path, small_clips):
    cache = tmp_path / "cache"
    first = extract_dataset(small_clips[:2], JHMDB, cache, MNV2, workers=1, progress=False)
    assert first == {}
    stamps = {c: cache_path(cache, JHMDB, c).stat().st_mtime_ns for c in small_clips[:2]}
    # A resumed run computes only what is missing.
    extract_dataset(small_clips, JHMDB, cache, MNV2, workers=2, progress=False)
    assert all(cache_path(cache, JHMDB, c).stat().st_mtime_ns == t for c, t in stamps.items())
    extractor = Extractor(MNV2, num_threads=1)
    for clip in small_clips:
        cached = load_cached(cache_path(cache, JHMDB, clip), clip)
        assert cached is not None and cached.flipped.shape == cached.feats.shape
        device = clip_features(extractor, clip, 25).feats
        np.testing.assert_array_equal(cached.deploy_sample(25), device)  # training features == served features
    assert not list(cache.rglob("*.tmp"))
    # Asking for crop views recomputes the entries that lack them; the original features stay exact.
    extract_dataset(small_clips[:1], JHMDB, cache, MNV2, crops=2, workers=1, progress=False)
    with_crops = load_cached(cache_path(cache, JHMDB, small_clips[0]), small_clips[0], crops=2)
    assert with_crops.views.shape[0] == 3 and not np.array_equal(with_crops.views[1], with_crops.feats)
    np.testing.assert_array_equal(
        with_crops.feats, load_cached(cache_path(cache, JHMDB, small_clips[0]), small_clips[0]).feats
    )


def test_corrupt_clip_is_listed_not_fatal(tmp_path, small_clips):
    root = tmp_path / "ds"
    (root / "wave").mkdir(parents=True)
    good = root / "wave" / "good.avi"
    good.symlink_to(small_clips[0])
    broken = root / "wave" / "broken.avi"
    broken.write_bytes(small_clips[0].read_bytes()[:3000])
    failures = extract_dataset([good, broken], root, tmp_path / "c", MNV2, workers=1, progress=False)
    assert list(failures) == [str(broken)] and "broken.avi" in failures[str(broken)]
    assert load_cached(cache_path(tmp_path / "c", root, good), good) is not None


def test_stale_cache_entry_is_recomputed(tmp_path, small_clips):
    root = tmp_path / "ds"
    (root / "pour").mkdir(parents=True)
    clip = root / "pour" / "c.avi"
    clip.write_bytes(small_clips[2].read_bytes())
    cache = tmp_path / "c"
    extract_dataset([clip], root, cache, MNV2, workers=1, progress=False)
    clip.write_bytes(small_clips[3].read_bytes())  # the clip changed since
    assert load_cached(cache_path(cache, root, clip), clip) is None


@pytest.mark.slow
def test_experiment_trains_converts_exports_and_checks_on_a_small_dataset(tmp_path):
    """features -> train -> evaluate -> convert -> export -> edgevid classify, on 3 real JHMDB classes."""
    root = jhmdb_subset(tmp_path / "data", per_class=12)
    out, head = tmp_path / "run", tmp_path / "head"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.experiment",
            "--dataset",
            "folders",
            "--data",
            str(root),
            "--extractor",
            str(MNV2),
            "--heads",
            "gru128,frame,gru128n_x5,gru128n_late",
            "--max-epochs",
            "4",
            "--out",
            str(out),
            "--cache",
            str(tmp_path / "cache"),
            "--export",
            str(head),
            "--head",
            "gru128n_late",
            "--motion",
            "dis_ultrafast-80x60",
            "--workers",
            "2",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    for name in ("gru128", "frame", "gru128n_x5", "gru128n_late"):
        for variant in ("float", "dynamic_int8"):
            v = report["heads"][name]["variants"][variant]
            assert v["agreement_val"]["top1_agreement"] == 1.0
            assert v["agreement_val"]["max_abs_diff"] < (1e-4 if variant == "float" else 0.05)
            assert not [op for op in v["ops"] if op.startswith("CUSTOM") or op.startswith("Flex")]
        assert report["heads"][name]["variants"]["dynamic_int8"]["ops"].get("FULLY_CONNECTED", 0) <= 9
    assert (out / "report.md").read_text().count("| gru128 |") >= 3
    assert (out / "confusion_gru128.png").stat().st_size > 1000
    # Label order travels with the model: the exported labels are the dataset's class order.
    assert (head / "labels.txt").read_text().split() == report["classes"] == ["golf", "pour", "wave"]
    # The exported head reads both streams; classify served it the report's accuracy (checked by --export).
    assert "installed head: top-1" in proc.stdout
    manifest = json.loads((head / "manifest.json").read_text())
    assert manifest["streams"] == ["appearance", "motion"] and manifest["motion"]["method"] == "dis_ultrafast"
    assert manifest["extractor"]["sha256"] == [sha256_file(MNV2)]  # only the extractor file it was checked on
    assert len(manifest["runtimes"]) == 1 and manifest["runtimes"][0].startswith(
        "ai-edge-litert "
    )  # name and version, as run
    # Every trained head gets a temperature fitted on validation, judged on held-out windows: the exported
    # one carries it if it passed (not on a search bound, a lower held-out ECE), and the min_score chosen there.
    variant = report["heads"]["gru128n_late"]["variants"]["dynamic_int8"]
    check = variant["calibration_check"]
    assert check["cross_validated_folds"] >= 2  # a handful of validation clips: judged cross-validated
    if check["written"]:
        assert (
            manifest["calibration"]["temperature"] == check["temperature"]
            and "validation" in manifest["calibration"]["fit_on"]
        )
        assert (
            manifest["calibration"]["ece_after"] < manifest["calibration"]["ece_before"]
            and 0.05 < check["temperature"] < 18
        )
    else:
        assert "calibration" not in manifest or manifest["calibration"] is None
        assert f"warning: gru128n_late dynamic_int8: calibration not written: {check['refused']}" in proc.stderr
    assert manifest["min_score"] == variant["min_score"] and 0 <= manifest["min_score"] <= 1
    # A reordered label file no longer matches the manifest and is refused.
    labels = head / "labels.txt"
    labels.write_text("pour\ngolf\nwave\n")
    from edgevid.errors import ModelError
    from edgevid.head import Head

    with pytest.raises(ModelError, match="labels.txt: sha256"):
        Head(head)

    # Finished runs of one split: --from-run installs validation's choice over all of them, through the
    # same export and classify check; a second run (same split, features from the same cache) competes.
    out2 = tmp_path / "run2"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.experiment",
            "--dataset",
            "folders",
            "--data",
            str(root),
            "--extractor",
            str(MNV2),
            "--heads",
            "frame",
            "--max-epochs",
            "2",
            "--seed",
            "1",
            "--out",
            str(out2),
            "--cache",
            str(tmp_path / "cache"),
            "--workers",
            "1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    def from_run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tools.experiment", "--from-run", *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )

    chosen = tmp_path / "chosen"
    proc = from_run(str(out), str(out2), "--export", str(chosen), "--extractor", str(MNV2))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "training" not in proc.stdout and "installed head: top-1" in proc.stdout
    reports = {d: json.loads((d / "report.json").read_text()) for d in (out, out2)}
    run, name = max(
        ((d, n) for d, r in reports.items() for n in r["heads"]),  # validation only; a tie: fewer parameters
        key=lambda c: (reports[c[0]]["heads"][c[1]]["val_top1"], -reports[c[0]]["heads"][c[1]]["params"]),
    )
    assert f"exporting {name} from {run} " in proc.stdout
    assert (chosen / "head.tflite").read_bytes() == (run / f"{name}_dynamic_int8.tflite").read_bytes()
    assert json.loads((chosen / "manifest.json").read_text())["name"] == f"{reports[run]['dataset']}-{name}"
    # Refused before anything is written: another extractor than the run's, runs of two splits.
    proc = from_run(str(out2), "--export", str(tmp_path / "no1"), "--extractor", str(V3SMALL))
    assert proc.returncode == 2 and "not the extractor" in proc.stderr and not (tmp_path / "no1").exists()
    other = tmp_path / "run2-val-seed1"  # run2 as if made with another validation split
    other.mkdir()
    moved = reports[out2] | {"dataset_args": reports[out2]["dataset_args"] | {"val_seed": 1}}
    (other / "report.json").write_text(json.dumps(moved))
    proc = from_run(str(out), str(other), "--export", str(tmp_path / "no2"), "--extractor", str(MNV2))
    assert proc.returncode == 2 and "not of one dataset split" in proc.stderr and not (tmp_path / "no2").exists()


def test_test_clips_get_no_mirrored_view_and_most_failing_stops(tmp_path, small_clips):
    """Evaluation-only clips skip the augmentation views (half the work); their features are the same."""
    from tools.features import most_failed

    cache = tmp_path / "c"
    assert extract_dataset(small_clips[:1], JHMDB, cache, MNV2, crops=-1, workers=1, progress=False) == {}
    bare = load_cached(cache_path(cache, JHMDB, small_clips[0]), small_clips[0], crops=-1)
    assert bare.views.shape[0] == 0
    assert (
        load_cached(cache_path(cache, JHMDB, small_clips[0]), small_clips[0]) is None
    )  # training needs the mirror: recomputed
    extract_dataset(small_clips[:1], JHMDB, cache, MNV2, workers=1, progress=False)
    full = load_cached(cache_path(cache, JHMDB, small_clips[0]), small_clips[0], crops=-1)
    np.testing.assert_array_equal(full.feats, bare.feats)
    # The stop rule: more than half failed, once 8 were tried.
    assert not most_failed(4, 7) and not most_failed(4, 8) and most_failed(5, 8) and most_failed(200, 357)


def test_group_pattern_and_split_files_for_a_folder_dataset(tmp_path):
    """Actors named in the file (`anna_01.avi`) stay on one side of train/val/test; split files fix the test clips."""
    root = tmp_path / "clips"
    for cls in ("wave", "pour"):
        for actor in ("anna", "bob", "carl", "dora"):
            for k in (1, 2):
                (root / cls).mkdir(parents=True, exist_ok=True)
                (root / cls / f"{actor}_{k:02d}.avi").symlink_to(sorted((JHMDB / cls).glob("*.avi"))[k])
    ds = read_folders(root, group_pattern="^[^_]+", seed=1)
    sides = [{(i.label, i.group) for i in part} for part in (ds.train, ds.val, ds.test)]
    assert all(sides) and not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert {i.group for i in ds.train + ds.val + ds.test} == {"anna", "bob", "carl", "dora"}
    (tmp_path / "split").mkdir()
    (tmp_path / "split" / "test.txt").write_text("wave/dora_01.avi\nwave/dora_02.avi\npour/dora_01.avi\n")
    (tmp_path / "split" / "train.txt").write_text(
        "\n".join(f"{c}/{a}_{k:02d}.avi" for c in ("wave", "pour") for a in ("anna", "bob", "carl") for k in (1, 2))
    )
    fixed = read_folders(root, group_pattern="^[^_]+", splits_dir=tmp_path / "split")
    assert sorted(i.path.name for i in fixed.test) == ["dora_01.avi", "dora_01.avi", "dora_02.avi"]
    assert fixed.problems == ["pour/dora_02.avi: in neither train.txt nor test.txt; left out"]
    assert fixed.val and not {(i.label, i.group) for i in fixed.val} & {(i.label, i.group) for i in fixed.train}
    with pytest.raises(DatasetError, match="needs"):
        from tools.datasets import check_split

        check_split(read_folders(root, group_pattern="^"), "each class needs at least 3 groups")  # one group per class


def test_export_chooses_by_validation_then_fewer_parameters():
    """`tools.experiment --export`'s rule over runs of one split: validation top-1, a tie to the head
    with fewer parameters; test scores never count."""
    from pathlib import Path

    from tools.experiment import ExportError, choose_head

    def head(val: float, params: int, test: float) -> dict:
        return {"val_top1": val, "params": params, "variants": {"dynamic_int8": {"test": {"top1": test}}}}

    a, b = Path("runs/a"), Path("runs/b")
    reports = {
        a: {"heads": {"gru128n": head(0.6, 620_000, 0.9), "frame": head(0.5, 670_000, 0.5)}},
        b: {"heads": {"frame_m": head(0.6, 300_000, 0.4), "gru1280": head(0.55, 10_000_000, 0.8)}},
    }
    assert choose_head(reports) == (b, "frame_m")
    assert choose_head(reports, "frame") == (a, "frame")
    assert choose_head({a: reports[a]}) == (a, "gru128n")
    with pytest.raises(ExportError, match="no head 'lstm1280'.*frame, frame_m, gru1280, gru128n"):
        choose_head(reports, "lstm1280")


# -- direction-safe mirroring --------------------------------------------------------------------------
#: Real JHMDB side-view walk/run clips and the way the person moves on screen (looked at: first,
#: middle and last frames; all tagged ``le``/``ri`` by HMDB).
MOVES = {
    "walk/AgriculturalAviation_walk_f_nm_np1_le_med_1.avi": "left",
    "walk/Veoh_Alpha_Dog_2_walk_u_nm_np1_le_med_29.avi": "left",
    "walk/prelinger_LetsPlay1949_walk_f_nm_np1_le_med_10.avi": "left",
    "walk/OldSchool_walk_f_nm_np1_ri_med_0.avi": "right",
    "walk/TheLastManOnearth_walk_f_cm_np1_ri_med_2.avi": "right",
    "walk/likebeckam_walk_f_cm_np1_ri_med_31.avi": "right",
    "run/20060723sfjffangelina_run_f_nm_np1_ri_med_2.avi": "right",
    "run/The_Matrix_3_run_f_cm_np1_ri_med_7.avi": "right",
}
OTHER = {"left": "right", "right": "left"}


def direction_set(root):
    """``moves_left/`` and ``moves_right/``: each clip of MOVES under the way it moves, and its mirror
    image (every frame flipped, written losslessly) under the other: ``<source>_orig.avi`` / ``<source>_mirror.avi``."""
    import cv2

    for rel, way in MOVES.items():
        src = JHMDB / rel
        for d in OTHER:
            (root / f"moves_{d}").mkdir(parents=True, exist_ok=True)
        (root / f"moves_{way}" / f"{src.stem}_orig.avi").symlink_to(src)
        cap = cv2.VideoCapture(str(src))
        fps, frames = cap.get(cv2.CAP_PROP_FPS), []
        while (got := cap.read())[0]:
            frames.append(got[1])
        cap.release()
        out = cv2.VideoWriter(
            str(root / f"moves_{OTHER[way]}" / f"{src.stem}_mirror.avi"),
            cv2.VideoWriter_fourcc(*"FFV1"),
            fps,
            (frames[0].shape[1], frames[0].shape[0]),
        )
        for f in frames:
            out.write(np.ascontiguousarray(f[:, ::-1]))
        out.release()
    return root


@pytest.fixture(scope="module")
def directions(tmp_path_factory):
    """The direction set, its folder dataset (groups: one source clip and its mirror image) and a
    feature cache holding every clip with its mirrored view."""
    root = direction_set(tmp_path_factory.mktemp("directions") / "clips")
    ds = read_folders(root, group_pattern=r"^(.+)_(?:orig|mirror)\.avi$")
    cache = root.parent / "cache"
    items = ds.train + ds.val + ds.test
    assert extract_dataset([i.path for i in items], root, cache, MNV2, workers=1, progress=False) == {}
    return root, ds, cache


def test_mirror_pairs_by_name_and_refusals():
    from tools.mirror import MirrorError, mirror_plan, parse_pairs

    plan = mirror_plan(["swipe_left", "swipe_right", "wave", "point_left", "TurnClockwise", "TurnCounterClockwise"])
    assert plan.pairs == [("swipe_left", "swipe_right"), ("TurnClockwise", "TurnCounterClockwise")]
    assert plan.target == [1, 0, 2, None, 5, 4]  # point_left has no twin: its mirror image is no class, never trained
    assert "swipe_left<->swipe_right" in plan.describe() and "point_left" in plan.describe()
    given = mirror_plan(["wave_in", "wave_out", "clap"], pairs=parse_pairs("wave_out=wave_in"))
    assert given.target == [1, 0, 2] and "(--mirror-pairs)" in given.describe()
    assert mirror_plan(["swipe_left", "swipe_right"], off=True).target == [None, None]
    with pytest.raises(MirrorError, match="'wave_up' is not a class"):
        mirror_plan(["wave_in", "wave_out"], pairs=[("wave_in", "wave_up")])
    with pytest.raises(ValueError, match="CLASS=MIRROR_CLASS"):
        parse_pairs("wave_in")


@pytest.mark.slow
def test_mirroring_never_trains_a_direction_on_its_opposites_frames(directions):
    """Every training sample, from any view, is labelled with the class whose clip it shows: a
    mirrored moves_left clip is a moves_right clip (the same frames, exactly), and trains as one."""
    from tools.features import view_flips
    from tools.mirror import MirrorPlan, mirror_plan, view_labels
    from tools.train import Quant, epoch_batch

    root, ds, cache = directions
    items = ds.train + ds.val + ds.test
    clips = [load_cached(cache_path(cache, root, i.path), i.path) for i in items]
    y = np.array([i.label for i in items])
    # The check's data: a clip's cached mirrored view is its mirror file's features (lossless file, same frames).
    by_name = {(i.path.parent.name, i.path.name): c for i, c in zip(items, clips)}
    for i, c in zip(items, clips):
        if i.path.name.endswith("_orig.avi"):
            twin = by_name[(f"moves_{OTHER[i.path.parent.name[6:]]}", i.path.name.replace("_orig", "_mirror"))]
            assert np.abs(c.flipped.astype(int) - twin.feats.astype(int)).max() <= 2
            assert (
                np.abs(c.feats.astype(int) - twin.feats.astype(int)).mean()
                > 5 * np.abs(c.flipped.astype(int) - twin.feats.astype(int)).mean()
            )
    frames = np.concatenate([c.feats for c in clips]).astype(np.float32)
    owner = np.concatenate([[k] * len(c.feats) for k, c in enumerate(clips)])

    def wrong_labels(plan) -> int:
        """Samples over 30 epochs labelled with another class than the clip whose frames they are."""
        labels = view_labels(y, plan, [view_flips(i.path, root, 0) for i in items])
        rng, wrong = np.random.default_rng(0), 0
        for _ in range(30):
            x, lab = epoch_batch(clips, labels, y, 8, rng, Quant(1.0, 0))
            for row, label in zip(x, lab):
                nearest = owner[np.argmin(((frames[None] - row[:, None]) ** 2).sum(-1), axis=1)]
                wrong += int(np.any(y[nearest] != label))
        return wrong

    plan = mirror_plan(ds.classes)
    assert plan.pairs == [("moves_left", "moves_right")]
    assert wrong_labels(plan) == 0
    assert wrong_labels(mirror_plan(ds.classes, off=True)) == 0
    # The old rule (a mirror image keeps its label) fails this check: about half the mirrored samples.
    assert wrong_labels(MirrorPlan(ds.classes, [0, 1])) > 100


def _experiment(*argv: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return run_group(
        [sys.executable, "-m", "tools.experiment", "--extractor", str(MNV2), *argv],
        cwd=ROOT,
        timeout=timeout,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


@pytest.mark.slow
def test_experiment_reports_the_mirror_pairs_it_trained_with(directions, tmp_path):
    root, _, cache = directions
    proc = _experiment(
        "--dataset",
        "folders",
        "--data",
        str(root),
        "--group-pattern",
        r"^(.+)_(?:orig|mirror)\.avi$",
        "--heads",
        "frame",
        "--max-epochs",
        "2",
        "--min-epochs",
        "1",
        "--out",
        str(tmp_path / "run"),
        "--cache",
        str(cache),
        "--workers",
        "1",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mirror: swapped pairs moves_left<->moves_right; 0 classes mirror to themselves" in proc.stdout
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["mirror"]["pairs"] == [["moves_left", "moves_right"]] and report["mirror"]["target"] == [
        "moves_right",
        "moves_left",
    ]
    assert "Augmentation mirror: swapped pairs moves_left<->moves_right" in (tmp_path / "run" / "report.md").read_text()


def test_bad_mirror_and_group_options_are_refused_before_extraction(tmp_path):
    """One line naming the option, exit 2, nothing extracted: --mirror-pairs naming no class, a
    --group-pattern that matches no file (or too few), fewer than 3 groups in a class."""
    root = jhmdb_subset(
        tmp_path / "clips", ("wave", "pour"), per_class=6, name=lambda cls, i, clip: f"actor{i % 3}_{cls}_{i}.avi"
    )
    base = [
        "--dataset",
        "folders",
        "--data",
        str(root),
        "--heads",
        "frame",
        "--out",
        str(tmp_path / "run"),
        "--cache",
        str(tmp_path / "cache"),
    ]

    def refused(*extra: str) -> str:
        proc = _experiment(*base, *extra, timeout=300)
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(err) == 1 and err[0].startswith("error: "), proc.stderr[-2000:]
        assert not (tmp_path / "cache").exists()
        return err[0]

    assert "--mirror-pairs: 'wave_out' is not a class (classes: pour, wave)" in refused(
        "--group-pattern", "^[^_]+", "--mirror-pairs", "wave=wave_out"
    )
    assert "--group-pattern '^dora' matches 0 of 12 file names; the other 12" in refused("--group-pattern", "^dora")
    few = refused("--group-pattern", r"^actor[01](?=_pour_[0-2])")  # matches 2 of 12 names: the rest one group each
    assert "matches 2 of 12 file names; the other 10 (actor0_pour_3.avi" in few
    two = jhmdb_subset(
        tmp_path / "two",
        ("wave", "pour"),
        per_class=6,
        name=lambda cls, i, clip: f"actor{i % (2 if cls == 'pour' else 3)}_{i}.avi",
    )
    err = refused("--data", str(two), "--group-pattern", "^[^_]+")
    assert (
        "each class needs at least 3 groups" in err
        and "these have fewer: pour 2" in err
        and "wave" not in err.split("fewer:")[1]
    )
    # Without a pattern, names that follow no convention make every clip its own group: said, not silent.
    from tools.datasets import check_group_pattern

    ds = read_folders(root)
    check_group_pattern(ds, None)
    assert ds.problems == [
        "every clip is its own group (12 clips; the names follow no UCF101/HMDB convention): "
        "clips of one actor or scene may sit in train and test; give --group-pattern"
    ]
    ds = read_folders(root, group_pattern="^actor[01]")  # 8 of 12 match: the 4 others are noted
    check_group_pattern(ds, "^actor[01]")
    assert ds.problems[-1].startswith("--group-pattern '^actor[01]' matches 8 of 12 file names; the other 4 (actor2_")
    proc = _experiment(*base, "--group-pattern", "(", timeout=300)
    assert proc.returncode == 2 and "--group-pattern: not a regular expression" in proc.stderr
    proc = _experiment(*base, "--mirror-pairs", "wave", timeout=300)
    assert proc.returncode == 2 and "argument --mirror-pairs: expected CLASS=MIRROR_CLASS" in proc.stderr
    proc = _experiment(*base, "--mirror", "off", "--mirror-pairs", "wave=pour", timeout=300)
    assert proc.returncode == 2 and "--mirror-pairs needs mirrored views" in proc.stderr


def test_a_split_leaving_a_class_without_validation_is_refused(tmp_path):
    """Enough groups, but none of pour's went to validation (its groups are shared with wave's):
    refused, naming the class, before anything is extracted."""
    from tools.datasets import Dataset, Item, check_split

    def items(label: int, groups: str) -> list:
        return [Item(tmp_path / f"{g}_{label}.avi", label, g) for g in groups]

    ds = Dataset(
        "x", tmp_path, ["wave", "pour"], items(0, "ab") + items(1, "abc"), items(0, "d"), items(0, "e") + items(1, "f")
    )
    with pytest.raises(DatasetError, match="leaves validation without clips of pour .*each class needs"):
        check_split(ds, "each class needs at least 3 groups")
    ds.val += items(1, "g")
    check_split(ds, "each class needs at least 3 groups")
