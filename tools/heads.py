"""Keras heads over M x D frame features: the study's GRU, its LSTM and single-frame baselines,
compact GRUs, and ensembles of them.

``build(spec, ..., export=True)`` rebuilds the same layers for conversion: batch 1, no dropout
(dropout left in an export adds variable ops; a dynamic batch makes the GRU's WHILE loop fail to
convert). Weights are copied member by member with ``set_weights``; Dropout layers carry none.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class HeadSpec:
    name: str
    kind: str  # "gru", "lstm", "frame", "stats" (mean and std of each input over the window, then an MLP)
    # or "seg3" (stats, with the mean of each third of the window instead of one mean: keeps time order)
    hidden: int  # recurrent units (or the per-frame MLP width for "frame")
    lr: float
    dense: int = 512
    pool: bool = False  # mean of the recurrent outputs over time instead of the last state
    normalize: bool = False  # standardize each feature with training-set mean/std (folded into the model)
    members: int = 1  # an ensemble of independently trained (seeded) copies, probabilities averaged
    crops: int = 0  # random-crop views of each training clip added to the mirrored one
    dropout: float = 0.5
    motion: bool = False  # reads the motion stream too: per frame, features then the motion descriptor
    late: bool = False  # late fusion: one branch per stream, their logits summed (else one input, concatenated)

    @property
    def description(self) -> str:
        what = {
            "gru": f"GRU-{self.hidden}",
            "lstm": f"LSTM-{self.hidden}",
            "frame": f"single-frame MLP-{self.hidden}",
            "stats": f"mean+std over time, MLP-{self.hidden}",
            "seg3": f"means of 3 time segments + std, MLP-{self.hidden}",
        }[self.kind]
        extras = [x for x, on in (("input standardization", self.normalize), ("mean over time", self.pool)) if on]
        if self.crops:
            extras.append(f"{self.crops} crop views")
        if self.motion:
            extras.append("+ motion, late fusion" if self.late else "+ motion, concatenated")
        if self.members > 1:
            extras.append(f"ensemble of {self.members}")
        return what + (f" ({', '.join(extras)})" if extras else "")


SPECS = {
    s.name: s
    for s in (
        HeadSpec("gru1280", "gru", 1280, 1e-4),  # the study's head
        HeadSpec("lstm1280", "lstm", 1280, 1e-4),
        HeadSpec("frame", "frame", 512, 1e-3),  # single-frame MLP, predictions averaged over frames
        HeadSpec("gru128", "gru", 128, 1e-3),  # compact: about 1/16 of the study head's size
        HeadSpec("gru128n", "gru", 128, 1e-3, normalize=True, pool=True),
        HeadSpec("gru128n_x5", "gru", 128, 1e-3, normalize=True, pool=True, members=5),
        HeadSpec("gru128c", "gru", 128, 1e-3, crops=4),
        HeadSpec("gru128nc", "gru", 128, 1e-3, normalize=True, pool=True, crops=4),
        HeadSpec("gru128nc_x5", "gru", 128, 1e-3, normalize=True, pool=True, crops=4, members=5),
        HeadSpec("framec", "frame", 512, 1e-3, crops=4),
        # With the motion stream (per-stream standardization folded in, then concatenated or late-fused).
        HeadSpec("frame_m", "frame", 512, 1e-3, normalize=True, motion=True),
        HeadSpec("lstm1280_m", "lstm", 1280, 1e-4, normalize=True, motion=True),
        HeadSpec("gru1280_m", "gru", 1280, 1e-4, normalize=True, motion=True),
        HeadSpec("gru128n_m", "gru", 128, 1e-3, normalize=True, pool=True, motion=True),
        HeadSpec("gru128n_m_x5", "gru", 128, 1e-3, normalize=True, pool=True, motion=True, members=5),
        HeadSpec("gru128n_late", "gru", 128, 1e-3, normalize=True, pool=True, motion=True, late=True),
        HeadSpec("gru128n_late_x5", "gru", 128, 1e-3, normalize=True, pool=True, motion=True, late=True, members=5),
        HeadSpec("frame_late", "frame", 512, 1e-3, normalize=True, motion=True, late=True),
        HeadSpec("frame_m_x5", "frame", 512, 1e-3, normalize=True, motion=True, members=5),
        HeadSpec("stats", "stats", 256, 1e-3, normalize=True),
        HeadSpec("stats_m", "stats", 256, 1e-3, normalize=True, motion=True),
        HeadSpec("stats_m_x5", "stats", 256, 1e-3, normalize=True, motion=True, members=5),
        HeadSpec("seg3_m", "seg3", 256, 1e-3, normalize=True, motion=True),
        HeadSpec("seg3_m_x5", "seg3", 256, 1e-3, normalize=True, motion=True, members=5),
    )
}


def _mlp(x, hidden: int, drop: float, export: bool):
    """Dropout -> Dense -> BN -> LeakyReLU 0.3 -> Dropout (no Dropout layers in an export twin)."""
    from keras import layers

    if not export:
        x = layers.Dropout(drop)(x)
    x = layers.Dense(hidden)(x)
    x = layers.BatchNormalization()(x)
    x = layers.LeakyReLU(negative_slope=0.3)(x)
    return x if export else layers.Dropout(drop)(x)


def _branch(spec: HeadSpec, x, classes: int, drop: float, export: bool):
    """One stream's path to class logits: the recurrent or per-frame MLP head of ``spec``."""
    from keras import layers

    if spec.kind in ("gru", "lstm"):
        rnn = layers.GRU if spec.kind == "gru" else layers.LSTM
        x = rnn(spec.hidden, dropout=drop, return_sequences=spec.pool)(x)
        if spec.pool:
            x = layers.GlobalAveragePooling1D()(x)
        x = layers.BatchNormalization()(x)
        x = layers.Dense(spec.dense)(x)
        x = layers.BatchNormalization()(x)
        x = layers.LeakyReLU(negative_slope=0.3)(x)
        if not export:
            x = layers.Dropout(drop)(x)
        return layers.Dense(classes)(x)
    if spec.kind == "frame":
        x = layers.Dense(classes)(_mlp(x, spec.hidden, drop, export))
        return layers.GlobalAveragePooling1D()(x)  # mean of per-frame logits
    if spec.kind == "stats":
        from keras import ops

        mean = layers.GlobalAveragePooling1D()(x)
        square = layers.GlobalAveragePooling1D()(layers.Lambda(lambda t: t * t)(x))
        std = layers.Lambda(lambda ab: ops.sqrt(ops.maximum(ab[1] - ab[0] * ab[0], 0.0) + 1e-6))([mean, square])
        return layers.Dense(classes)(_mlp(layers.Concatenate()([mean, std]), spec.hidden, drop, export))
    if spec.kind == "seg3":
        from keras import ops

        # Order matters for motion (a swing's start and end differ): one mean per third of the window.
        m = x.shape[1]
        cuts = [0, m // 3, 2 * m // 3, m]
        means = [
            layers.GlobalAveragePooling1D()(layers.Lambda(lambda t, a=a, b=b: t[:, a:b])(x))
            for a, b in zip(cuts, cuts[1:])
        ]
        mean = layers.GlobalAveragePooling1D()(x)
        square = layers.GlobalAveragePooling1D()(layers.Lambda(lambda t: t * t)(x))
        std = layers.Lambda(lambda ab: ops.sqrt(ops.maximum(ab[1] - ab[0] * ab[0], 0.0) + 1e-6))([mean, square])
        return layers.Dense(classes)(_mlp(layers.Concatenate()([*means, std]), spec.hidden, drop, export))
    raise ValueError(f"unknown head kind {spec.kind!r}")


def _member(spec: HeadSpec, frames: int, dim: int, classes: int, export: bool, norm):
    """A late-fusion head splits each frame's input into the features and the motion descriptor
    (the last ``edgevid.motion.DIM`` values)."""
    import keras
    from keras import layers

    from edgevid.motion import DIM

    drop = 0.0 if export else spec.dropout
    inputs = keras.Input((frames, dim), batch_size=1 if export else None, name="features")
    x = inputs
    if spec.normalize:
        mean, std = norm
        x = layers.Normalization(mean=mean, variance=np.square(std))(x)
    if spec.late:
        split = dim - DIM
        appearance = layers.Lambda(lambda t: t[:, :, :split], name="appearance")(x)
        motion = layers.Lambda(lambda t: t[:, :, split:], name="motion")(x)
        small = HeadSpec(
            spec.name, spec.kind, min(spec.hidden, 64), spec.lr, dense=128, pool=spec.pool, dropout=spec.dropout
        )
        logits = layers.Add()(
            [_branch(spec, appearance, classes, drop, export), _branch(small, motion, classes, drop, export)]
        )
    else:
        logits = _branch(spec, x, classes, drop, export)
    outputs = layers.Softmax(name="probs")(logits)
    return keras.Model(inputs, outputs)


def build(
    spec: HeadSpec, frames: int, dim: int, classes: int, *, export: bool = False, norm=None, members: int | None = None
):
    """One member (``members=1``, for training) or the whole head (export: all members averaged).

    Returns ``(model, member_models)``; copy trained weights into ``member_models`` in order.
    """
    import keras
    from keras import layers

    n = spec.members if members is None else members
    parts = [_member(spec, frames, dim, classes, export, norm) for _ in range(n)]
    if n == 1:
        return parts[0], parts
    inputs = keras.Input((frames, dim), batch_size=1 if export else None, name="features")
    outputs = layers.Average(name="probs")([p(inputs) for p in parts])
    return keras.Model(inputs, outputs, name=spec.name), parts
