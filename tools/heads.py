"""Keras heads over M x D frame features: the study's GRU, its LSTM and single-frame baselines, a compact GRU.

``build(spec, classes, export=True)`` rebuilds the same layers for conversion: batch 1, no dropout
(dropout left in an export adds variable ops; a dynamic batch makes the GRU's WHILE loop fail to
convert). Weights are copied with ``set_weights``; Dropout layers carry none, so the order matches.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HeadSpec:
    name: str
    kind: str  # "gru", "lstm" or "frame"
    hidden: int  # recurrent units (or the per-frame MLP width for "frame")
    lr: float
    dense: int = 512
    pool: bool = False  # mean of the recurrent outputs over time instead of the last state
    weight_decay: float = 0.0  # AdamW; 0 = the study's plain Adam
    smoothing: float = 0.0  # label smoothing
    dropout: float = 0.5


SPECS = {
    s.name: s
    for s in (
        HeadSpec("gru1280", "gru", 1280, 1e-4),  # the study's head
        HeadSpec("lstm1280", "lstm", 1280, 1e-4),
        HeadSpec("frame", "frame", 512, 1e-3),  # single-frame MLP, predictions averaged over frames
        HeadSpec("gru128", "gru", 128, 1e-3),  # compact: <= 1/10 of the study head's size
        HeadSpec("gru256", "gru", 256, 1e-3),
        HeadSpec("gru128p", "gru", 128, 1e-3, pool=True, weight_decay=1e-2, smoothing=0.1),
        HeadSpec("gru64p", "gru", 64, 1e-3, pool=True, weight_decay=1e-2, smoothing=0.1),
        HeadSpec("gru256p", "gru", 256, 1e-3, pool=True, weight_decay=1e-2, smoothing=0.1),
        HeadSpec("gru128r", "gru", 128, 1e-3, weight_decay=1e-2, smoothing=0.1),
    )
}


def build(spec: HeadSpec, frames: int, dim: int, classes: int, *, export: bool = False):
    """The head as a Keras model; ``export`` gives the conversion twin (batch 1, no dropout)."""
    import keras
    from keras import layers

    drop = 0.0 if export else spec.dropout
    inputs = keras.Input((frames, dim), batch_size=1 if export else None, name="features")

    def top(x):
        x = layers.BatchNormalization()(x)
        x = layers.Dense(spec.dense)(x)
        x = layers.BatchNormalization()(x)
        x = layers.LeakyReLU(negative_slope=0.3)(x)
        if not export:
            x = layers.Dropout(drop)(x)
        return x

    if spec.kind in ("gru", "lstm"):
        rnn = layers.GRU if spec.kind == "gru" else layers.LSTM
        x = rnn(spec.hidden, dropout=drop, return_sequences=spec.pool)(inputs)
        if spec.pool:
            x = layers.GlobalAveragePooling1D()(x)
        x = top(x)
        outputs = layers.Dense(classes, activation="softmax", name="probs")(x)
    elif spec.kind == "frame":
        x = inputs
        if not export:
            x = layers.Dropout(drop)(x)
        x = layers.Dense(spec.hidden)(x)
        x = layers.BatchNormalization()(x)
        x = layers.LeakyReLU(negative_slope=0.3)(x)
        if not export:
            x = layers.Dropout(drop)(x)
        x = layers.Dense(classes)(x)
        x = layers.GlobalAveragePooling1D()(x)  # mean of per-frame logits
        outputs = layers.Softmax(name="probs")(x)
    else:
        raise ValueError(f"unknown head kind {spec.kind!r}")
    return keras.Model(inputs, outputs, name=spec.name)
