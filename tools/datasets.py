"""Labelled video datasets and their official splits, with nothing dropped silently.

Every reader returns a :class:`Dataset` with train/val/test lists and ``problems``: one line for
each clip that could not be placed (absent, unlisted, listed under another class), so a report can
show what was left out and why.
"""

from __future__ import annotations

import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from edgevid.capture import VIDEO_SUFFIXES


class DatasetError(Exception):
    """The dataset cannot be read as asked (missing folder or split file, empty class)."""


@dataclass(frozen=True)
class Item:
    path: Path
    label: int
    group: str  # clips sharing a group (same source video / actor) never straddle train and test


@dataclass
class Dataset:
    name: str
    root: Path
    classes: list[str]
    train: list[Item]
    val: list[Item]
    test: list[Item]
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.name}: {len(self.classes)} classes, {len(self.train)} train / {len(self.val)} val / "
            f"{len(self.test)} test clips, {len(self.problems)} problems"
        )


# HMDB51 names end in visible-body/camera-motion/persons/viewpoint/quality/clip-number tokens;
# what precedes them names the source video and action.
_HMDB_TAIL = re.compile(r"_[fhlu]_(?:cm|nm)_np\d+_(?:fr|ba|le|ri)_(?:goo|med|bad)_\d+$")
_UCF_GROUP = re.compile(r"^v_(.+?)_(g\d+)_c\d+$", re.IGNORECASE)


def group_of(path: Path, pattern: re.Pattern | str | None = None) -> str:
    """Source-video group of a clip: UCF101 ``gNN`` (with class), HMDB/JHMDB source name, else the stem.

    ``pattern`` (a regex searched in the file name) overrides that for a user's own naming, e.g.
    ``^[a-z]+`` for ``daria_bend.avi`` (the actor) or ``_s\\d+`` for ``a1_s1_t1_color.avi`` (the
    subject): its first group, else the whole match, is the group; a name it does not match is its own group.
    HMDB names are ``<source>_<action>_<tail>``: the action word (the clip's class folder) is
    dropped, so clips of one source video under different actions (``Faith_Rewarded_catch_*`` and
    ``Faith_Rewarded_throw_*``) share a group and never straddle train and validation.
    """
    stem = path.stem
    if pattern is not None:
        found = re.search(pattern, path.name)
        if found:
            return found.group(1) if found.re.groups else found.group(0)
        return stem
    m = _UCF_GROUP.match(stem)
    if m:
        return f"{m.group(1).lower()}_{m.group(2)}"
    m = _HMDB_TAIL.search(stem)
    if m:
        source, action = stem[: m.start()], f"_{path.parent.name}"
        return source[: -len(action)] if source.endswith(action) and len(source) > len(action) else source
    return stem


def _videos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def _class_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DatasetError(f"{root}: no class folders")
    empty = [f.name for f in folders if not _videos(f)]
    if empty:
        raise DatasetError(f"{root}: class folder(s) with no clips: {', '.join(empty)}")
    return folders


def split_validation(train: list[Item], fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Hold out whole groups (about ``fraction`` of each class's clips) from train, seeded.

    A group is one source video whatever its actions: it goes to one side with every clip it has,
    in any class (a group holding the last training clip of a class stays in training).
    """
    rng = random.Random(seed)
    groups: dict[str, list[Item]] = defaultdict(list)
    for item in train:
        groups[item.group].append(item)
    by_class: dict[int, list[str]] = defaultdict(list)
    for g, items in groups.items():
        for label in {i.label for i in items}:
            by_class[label].append(g)
    total = Counter(i.label for i in train)
    taken: Counter = Counter()
    decided: set[str] = set()
    held: set[str] = set()
    for label in sorted(by_class):
        candidates = sorted(by_class[label])
        rng.shuffle(candidates)
        goal = fraction * total[label]
        chosen_here = False
        for g in candidates:
            if g in decided:
                continue
            decided.add(g)
            counts = Counter(i.label for i in groups[g])
            n = counts[label]
            fits = taken[label] + n <= max(goal * 1.3, 1) or taken[label] == 0 and n <= 2 * goal
            leaves_training = all(taken[c] + k < total[c] for c, k in counts.items())
            if taken[label] < goal and fits and len(candidates) > 1 and leaves_training:
                held.add(g)
                taken.update(counts)
                chosen_here = True
        if not chosen_here and not taken[label] and len(candidates) > 1 and fraction > 0:
            # Small data (a few large groups): hold out the smallest group rather than nothing.
            free = [
                g
                for g in candidates
                if g not in held
                and all(taken[c] + k < total[c] for c, k in Counter(i.label for i in groups[g]).items())
            ]
            if free:
                g = min(free, key=lambda g: len(groups[g]))
                held.add(g)
                taken.update(Counter(i.label for i in groups[g]))
    keep = [i for i in train if i.group not in held]
    val = [i for i in train if i.group in held]
    return keep, val


def _hmdb_key(name: str) -> str:
    # JHMDB file names have '@' where the HMDB split lists have '#' or '&'.
    return name.replace("#", "@").replace("&", "@")


def read_jhmdb(
    root: Path,
    splits_dir: Path,
    split: int = 1,
    val_fraction: float = 0.14,
    seed: int = 0,
    group_pattern: str | None = None,
) -> Dataset:
    """JHMDB/HMDB51 layout: ``root/<class>/*.avi`` with ``<class>_test_split<k>.txt`` (1 train, 2 test, 0 unused)."""
    root, splits_dir = Path(root), Path(splits_dir)
    folders = _class_folders(root)
    classes = [f.name for f in folders]
    files = sorted(splits_dir.glob(f"*_test_split{split}.txt"))
    if not files:
        raise DatasetError(f"{splits_dir}: no *_test_split{split}.txt files")
    listed: dict[str, tuple[str, int]] = {}
    # Fallback key without the action word: HMDB lists some JHMDB clips under another action
    # (catch/LearnToShootFromTheMaster_catch_* is shoot_ball/LearnToShootFromTheMaster_shoot_ball_*).
    by_source: dict[str, tuple[str, int, str]] = {}
    for file in files:
        cls = file.name[: -len(f"_test_split{split}.txt")]
        for n, line in enumerate(file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or parts[1] not in {"0", "1", "2"}:
                raise DatasetError(f"{file}:{n}: expected '<file> 0|1|2', got {line.strip()!r}")
            listed[_hmdb_key(parts[0])] = (cls, int(parts[1]))
            by_source[_hmdb_key(parts[0]).replace(f"_{cls}_", "_", 1)] = (cls, int(parts[1]), parts[0])
    ds = Dataset(f"{root.name}-split{split}", root, classes, [], [], [])
    unused = 0
    for label, folder in enumerate(folders):
        for path in _videos(folder):
            entry = listed.get(_hmdb_key(path.name))
            if entry is None and (alt := by_source.get(_hmdb_key(path.name).replace(f"_{folder.name}_", "_", 1))):
                entry = alt[:2]
                ds.problems.append(f"{folder.name}/{path.name}: listed as {alt[0]}/{alt[2]}; labelled by its folder")
            elif entry is not None and entry[0] != folder.name:
                ds.problems.append(f"{folder.name}/{path.name}: listed under {entry[0]!r}; labelled by its folder")
            if entry is None:
                ds.problems.append(f"{folder.name}/{path.name}: not in any split list; left out")
                continue
            flag = entry[1]
            if flag == 0:
                unused += 1
                continue
            item = Item(path, label, group_of(path, group_pattern))
            (ds.train if flag == 1 else ds.test).append(item)
    if unused:
        ds.problems.append(f"{unused} clips marked 0 (unused) by split {split}; left out")
    ds.train, ds.val = split_validation(ds.train, val_fraction, seed)
    return keep_present_classes(ds)


def read_ucf101(
    root: Path,
    splits_dir: Path,
    split: int = 1,
    val_fraction: float = 0.14,
    seed: int = 0,
    group_pattern: str | None = None,
) -> Dataset:
    """UCF101 layout with the official ``classInd.txt`` / ``trainlist0N.txt`` / ``testlist0N.txt``.

    Class names are matched case-insensitively (the lists spell ``HandStandPushups``, the folder is
    ``HandstandPushups``); listed clips that are absent are reported, not fatal.
    """
    root, splits_dir = Path(root), Path(splits_dir)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    class_file = splits_dir / "classInd.txt"
    try:
        lines = class_file.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DatasetError(f"{class_file}: not found") from None
    classes: list[str] = []
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) != len(classes) + 1:
            raise DatasetError(f"{class_file}:{n}: expected '<index> <ClassName>' in order, got {line.strip()!r}")
        classes.append(parts[1])
    index = {c.lower(): i for i, c in enumerate(classes)}
    on_disk = {p.relative_to(root).as_posix().lower(): p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES}
    ds = Dataset(f"{root.name}-split{split}", root, classes, [], [], [])
    for kind in ("train", "test"):
        list_file = splits_dir / f"{kind}list0{split}.txt"
        if not list_file.is_file():
            raise DatasetError(f"{list_file}: not found")
        absent = 0
        for n, line in enumerate(list_file.read_text(encoding="utf-8").splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            rel = parts[0].replace("\\", "/")
            cls = rel.split("/")[0].lower()
            if cls not in index:
                raise DatasetError(f"{list_file}:{n}: class {rel.split('/')[0]!r} is not in classInd.txt")
            if len(parts) > 1 and int(parts[1]) != index[cls] + 1:
                raise DatasetError(
                    f"{list_file}:{n}: label {parts[1]} disagrees with classInd.txt for {rel.split('/')[0]}"
                )
            path = on_disk.get(rel.lower())
            if path is None:
                absent += 1
                continue
            (ds.train if kind == "train" else ds.test).append(Item(path, index[cls], group_of(path, group_pattern)))
        if absent:
            ds.problems.append(f"{absent} clips listed in {list_file.name} are absent under {root}; left out")
    listed = {i.path for i in ds.train + ds.test}
    unlisted = [p for p in on_disk.values() if p not in listed]
    for p in sorted(unlisted):
        ds.problems.append(f"{p.relative_to(root)}: on disk but in no {split} list; left out")
    ds.classes = classes
    ds.train, ds.val = split_validation(ds.train, val_fraction, seed)
    return keep_present_classes(ds)


def read_folders(
    root: Path,
    test_fraction: float = 0.28,
    val_fraction: float = 0.14,
    seed: int = 0,
    group_pattern: str | None = None,
    splits_dir: Path | None = None,
) -> Dataset:
    """Any ``root/<class>/*`` dataset: a seeded split that keeps each group on one side.

    With ``splits_dir``, its ``train.txt`` and ``test.txt`` (one ``<class>/<file>`` per line) fix
    the test clips instead; validation is still held out of train by whole groups.
    """
    root = Path(root)
    folders = _class_folders(root)
    ds = Dataset(f"{root.name}-seed{seed}", root, [f.name for f in folders], [], [], [])
    items = [Item(p, label, group_of(p, group_pattern)) for label, f in enumerate(folders) for p in _videos(f)]
    if splits_dir is None:
        rest, ds.test = split_validation(items, test_fraction, seed)
        ds.train, ds.val = split_validation(rest, val_fraction / (1 - test_fraction), seed + 1)
        return ds
    ds.name = f"{root.name}-{Path(splits_dir).name}"
    side = {}
    for kind in ("train", "test"):
        list_file = Path(splits_dir) / f"{kind}.txt"
        if not list_file.is_file():
            raise DatasetError(
                f"{list_file}: not found (a folder split lists '<class>/<file>' per line in train.txt and test.txt)"
            )
        for line in list_file.read_text(encoding="utf-8").splitlines():
            if line.strip():
                side[line.strip().replace("\\", "/")] = kind
    train = []
    for item in items:
        kind = side.get(item.path.relative_to(root).as_posix())
        if kind is None:
            ds.problems.append(f"{item.path.relative_to(root)}: in neither train.txt nor test.txt; left out")
        else:
            (train if kind == "train" else ds.test).append(item)
    ds.train, ds.val = split_validation(train, val_fraction, seed)
    return ds


def keep_present_classes(ds: Dataset) -> Dataset:
    """Drop classes with no clip on disk (a subset of a listed dataset), renumbering the rest, so a
    head never carries labels it was not trained on; the dropped names go to ``problems``."""
    present = sorted({i.label for i in ds.train + ds.val + ds.test})
    if len(present) == len(ds.classes):
        return ds
    dropped = [c for i, c in enumerate(ds.classes) if i not in set(present)]
    new = {old: new for new, old in enumerate(present)}
    ds.train, ds.val, ds.test = (
        [Item(i.path, new[i.label], i.group) for i in part] for part in (ds.train, ds.val, ds.test)
    )
    ds.classes = [ds.classes[i] for i in present]
    shown = ", ".join(dropped[:10]) + (f" and {len(dropped) - 10} more" if len(dropped) > 10 else "")
    ds.problems.insert(0, f"{len(dropped)} listed classes have no clips here and are left out of the head: {shown}")
    return ds


def check_group_pattern(ds: Dataset, pattern: str | None) -> None:
    """Refuse a ``--group-pattern`` that matches no file name, or so few that most clips would fall
    back to one group each (every clip its own group: validation and test then share actors and
    scenes with training, and score far above what new people get); a few unmatched names are noted
    in ``problems``."""
    items = ds.train + ds.val + ds.test
    if pattern is None:
        if len(items) > 1 and len({i.group for i in items}) == len(items):
            ds.problems.append(
                f"every clip is its own group ({len(items)} clips; the names follow no UCF101/HMDB convention): "
                "clips of one actor or scene may sit in train and test; give --group-pattern"
            )
        return
    missed = [i.path.name for i in items if not re.search(pattern, i.path.name)]
    if not items or not missed:
        return
    shown = ", ".join(missed[:3]) + (", ..." if len(missed) > 3 else "")
    matched = len(items) - len(missed)
    if 2 * len(missed) > len(items):
        raise DatasetError(
            f"--group-pattern {pattern!r} matches {matched} of {len(items)} file names; the other {len(missed)} "
            f"({shown}) would each be their own group, so one actor's clips could sit in train and test: "
            "give a pattern that matches the part of every name that says who or where it was filmed"
        )
    ds.problems.append(
        f"--group-pattern {pattern!r} matches {matched} of {len(items)} file names; the other {len(missed)} "
        f"({shown}) are each their own group"
    )


def check_split(ds: Dataset, needed: str, min_groups: int = 3, listed: bool = False) -> None:
    """Refuse, before any feature is extracted, a split that leaves a class with fewer than
    ``min_groups`` groups (``listed``: counted in its train list, the test clips being fixed by
    split files), without training or validation clips, or leaves validation or test empty;
    ``needed`` says how many groups each class needs, in the user's terms."""
    groups: dict[int, set[str]] = defaultdict(set)
    for item in ds.train + ds.val + ([] if listed else ds.test):
        groups[item.label].add(item.group)
    few = {c: len(groups[c]) for c in range(len(ds.classes)) if len(groups[c]) < min_groups}
    if few:
        counts = ", ".join(f"{ds.classes[c]} {n}" for c, n in few.items())
        raise DatasetError(f"{ds.root}: {needed}; {'in the train list ' if listed else ''}these have fewer: {counts}")
    for side, items in (("train", ds.train), ("validation", ds.val), ("test", ds.test)):
        lacking = [ds.classes[c] for c in range(len(ds.classes)) if not any(i.label == c for i in items)]
        if side == "test" and len(lacking) < len(ds.classes):
            continue  # official test lists may lack a class; an empty test side cannot score anything
        if lacking:
            shown = ", ".join(lacking[:10]) + (f" and {len(lacking) - 10} more" if len(lacking) > 10 else "")
            raise DatasetError(
                f"{ds.root}: the split leaves {side} without clips of {shown} "
                f"(their groups are shared with other classes or too large): {needed}"
            )
