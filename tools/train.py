"""Training a head on cached features: jittered, mirrored samples for training; the deploy sample for eval."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevid.sampling import window_indices

from .features import CachedClip
from .heads import HeadSpec, build


@dataclass
class Quant:
    """How uint8 cached features become the float inputs the head sees (the extractor's own numbers)."""

    scale: float
    zero_point: int

    def __call__(self, q: np.ndarray) -> np.ndarray:
        if q.dtype == np.float32:  # already the head's input (e.g. features joined with the motion stream)
            return q
        return (q.astype(np.float32) - self.zero_point) * np.float32(self.scale)


def jitter_sample(clip: CachedClip, m: int, rng: np.random.Generator, view: int | None) -> np.ndarray:
    """One random frame from each of m equal segments (TSN-style), from the original frames
    (``view=None``) or an augmentation view (0 = mirrored, then crops): uint8 [m, D]."""
    n = clip.n_frames
    lo = (np.arange(m) * n) // m
    hi = np.maximum(((np.arange(m) + 1) * n) // m, lo + 1)
    # Nearest cached frame (the cache holds every frame of clips up to its cap).
    return clip.take(rng.integers(lo, hi), view)


def window_sampler(m: int, window_s: float):
    """Training samples at a fixed time scale: a ``window_s`` window at a uniformly random position
    in the clip, its m slots taken by :func:`edgevid.sampling.window_indices` (the daemon's rule).
    A clip shorter than the window is sampled whole (jittered), as ``classify`` takes it whole."""

    def sample(clip: CachedClip, rng: np.random.Generator, view: int | None) -> np.ndarray:
        if not clip.fps > 0:
            raise ValueError("window sampling needs the clip's fps (cache entry without fps and an unreadable clip)")
        slack = clip.duration - window_s  # on the clip's own timestamps, as a file source plays it
        if slack < -1e-9:
            return jitter_sample(clip, m, rng, view)
        start = rng.uniform(0.0, max(slack, 0.0))
        return clip.take(window_indices(clip.n_frames, clip.fps, window_s, m, start, clip.times), view)

    return sample


def epoch_batch(
    clips: list[CachedClip],
    view_labels: np.ndarray,
    y: np.ndarray,
    m: int,
    rng: np.random.Generator,
    quant: Quant,
    sampler=None,
) -> tuple[np.ndarray, np.ndarray]:
    """One jittered sample per clip and the label it trains: the original frames (label ``y``) or,
    uniformly with them, one of the views ``view_labels[i] >= 0`` allows (a mirrored view trains its
    class's mirror class, :func:`tools.mirror.view_labels`). ``sampler(clip, rng, view)`` replaces
    the whole-clip jittered sample, e.g. :func:`window_sampler`."""
    rows, labels = [], []
    for c, label, allowed in zip(clips, y, view_labels, strict=True):
        usable = np.flatnonzero(allowed >= 0)
        k = int(rng.random() * (1 + len(usable)))  # uniform over the original and each usable view
        view = int(usable[k]) if k < len(usable) else None
        rows.append(sampler(c, rng, view) if sampler else jitter_sample(c, m, rng, view))
        labels.append(label if view is None else allowed[view])
    return quant(np.stack(rows)), np.array(labels)


def deploy_batch(clips: list[CachedClip], m: int, quant: Quant) -> np.ndarray:
    return quant(np.stack([c.deploy_sample(m) for c in clips]))


def train_head(
    spec: HeadSpec,
    train: list[CachedClip],
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    classes: int,
    m: int,
    quant: Quant,
    *,
    seed: int = 0,
    max_epochs: int = 80,
    patience: int = 12,
    min_epochs: int = 0,
    batch_size: int = 32,
    augment: bool = True,
    view_labels: np.ndarray | None = None,
    norm=None,
    sampler=None,
    log=print,
):
    """One model: Adam + categorical cross-entropy, early stopping on validation loss (best weights kept).

    ``view_labels`` (int [N, 1 + spec.crops], :func:`tools.mirror.view_labels`): the label each
    augmentation view of each clip trains, -1 for none; needed when ``augment``.

    The kept weights come from epoch ``min_epochs`` or later (with a handful of validation clips,
    the loss of an untrained head can look best), and stopping waits ``patience`` epochs after that.
    """
    import keras

    keras.utils.set_random_seed(seed)
    dim = train[0].feats.shape[1]
    model, _ = build(spec, m, dim, classes, norm=norm, members=1)
    model.compile(optimizer=keras.optimizers.Adam(spec.lr), loss="categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(seed)
    if augment and (view_labels is None or view_labels.shape != (len(train), 1 + spec.crops)):
        raise ValueError(
            f"augmented training needs view_labels [{len(train)}, {1 + spec.crops}] (tools.mirror.view_labels)"
        )
    yv = keras.utils.to_categorical(y_val, classes)
    x_fixed = None if augment else deploy_batch(train, m, quant)
    history: list[dict] = []
    best, best_weights, waited = np.inf, None, 0
    t0 = time.perf_counter()
    for epoch in range(max_epochs):
        x, y = (
            epoch_batch(train, view_labels, y_train, m, rng, quant, sampler=sampler) if augment else (x_fixed, y_train)
        )
        h = model.fit(
            x, keras.utils.to_categorical(y, classes), batch_size=batch_size, epochs=1, verbose=0, shuffle=True
        )
        val_loss, val_acc = model.evaluate(x_val, yv, batch_size=64, verbose=0)
        row = {
            "epoch": epoch + 1,
            "loss": float(h.history["loss"][0]),
            "acc": float(h.history["accuracy"][0]),
            "val_loss": float(val_loss),
            "val_acc": float(val_acc),
        }
        history.append(row)
        if epoch + 1 < min(min_epochs, max_epochs):
            best_weights = None  # too early to choose
        elif val_loss < best - 1e-4 or best_weights is None:
            best, best_weights, waited = val_loss, model.get_weights(), 0
        else:
            waited += 1
        if epoch % 5 == 0 or waited == 0:
            log(
                f"  {spec.name} epoch {epoch + 1}: loss {row['loss']:.3f} val_loss {val_loss:.3f} val_acc {val_acc:.3f}"
            )
        if waited >= patience:
            break
    model.set_weights(best_weights)
    return model, {"epochs": history, "best_val_loss": float(best), "seconds": time.perf_counter() - t0}


def feature_stats(clips: list[CachedClip], quant: Quant) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and std of the training frames (the normalization folded into a head)."""
    x = quant(np.concatenate([c.feats for c in clips]))
    return x.mean(0), x.std(0) + 1e-3


def train_members(spec: HeadSpec, train, y_train, x_val, y_val, classes, m, quant, *, seed=0, log=print, **kw):
    """``spec.members`` models with seeds ``seed, seed+1, ...``; returns (models, histories, norm)."""
    norm = feature_stats(train, quant) if spec.normalize else None
    models, histories = [], []
    for i in range(spec.members):
        model, history = train_head(
            spec, train, y_train, x_val, y_val, classes, m, quant, seed=seed + i, norm=norm, log=log, **kw
        )
        models.append(model)
        histories.append(history)
    return models, histories, norm


def predict_members(models, x: np.ndarray) -> np.ndarray:
    """Average of the members' probabilities (what the exported ensemble computes)."""
    return np.mean([mdl.predict(x, batch_size=64, verbose=0) for mdl in models], axis=0)


def save_history(path: Path, history: dict) -> None:
    path.write_text(json.dumps(history, indent=1))
