"""Accuracy, top-5, per-class precision/recall/F1 and a normalized confusion matrix."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a proportion: one JHMDB test clip is ~0.4 points, so report ranges."""
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (c - h, c + h)


def evaluate(probs: np.ndarray, y: np.ndarray, classes: list[str]) -> dict:
    """Metrics of predicted probabilities ``[N, C]`` against integer labels ``[N]``."""
    from sklearn.metrics import classification_report, confusion_matrix, f1_score

    pred = probs.argmax(1)
    k = min(5, probs.shape[1])
    top5 = np.any(np.argsort(-probs, 1)[:, :k] == y[:, None], axis=1)
    correct = int((pred == y).sum())
    lo, hi = wilson(correct, len(y))
    labels = list(range(len(classes)))
    return {
        "n": int(len(y)),
        "top1": correct / len(y),
        "top1_ci95": [lo, hi],
        "top5": float(top5.mean()),
        "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "per_class": classification_report(
            y, pred, labels=labels, target_names=classes, output_dict=True, zero_division=0
        ),
        "confusion": confusion_matrix(y, pred, labels=labels).tolist(),
    }


def plot_confusion(confusion: list[list[int]], classes: list[str], path: Path, title: str) -> None:
    """Row-normalized confusion matrix as a PNG (rows: true class)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(confusion, float)
    cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = max(6, 0.35 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
