"""M indices uniformly over a clip's decoded frames: the rule alone, no video."""

from __future__ import annotations

import numpy as np
import pytest

from edgevid.sampling import sample_indices


@pytest.mark.parametrize("n,m", [(1, 25), (15, 25), (25, 25), (26, 25), (40, 25), (300, 25), (7, 3)])
def test_indices_uniform_and_in_range(n, m):
    idx = sample_indices(n, m)
    assert len(idx) == m and idx.min() >= 0 and idx.max() < n
    assert (np.diff(idx) >= 0).all()
    if n >= m:
        assert len(set(idx.tolist())) == m  # no repeats when the clip is long enough
        gaps = np.diff(idx)
        assert gaps.max() - gaps.min() <= 1  # evenly spread
