"""pedstream.dsp.checks.all_finite is np.isfinite(x).all(), including sums that overflow."""

from __future__ import annotations

import numpy as np
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from pedstream.dsp.checks import all_finite


@given(hnp.arrays(dtype=st.sampled_from([np.float32, np.float64]), shape=hnp.array_shapes(min_dims=1, max_dims=3),
                  elements=st.floats(allow_nan=True, allow_infinity=True, width=32)))
def test_all_finite_is_isfinite_all(x):
    assert all_finite(x) == bool(np.isfinite(x).all())


def test_overflowing_sum_of_finite_values_is_finite():
    x = np.full(10, np.finfo(np.float32).max, dtype=np.float32)
    assert all_finite(x) and not all_finite(np.append(x, np.nan)) and not all_finite(np.array([np.inf, -np.inf]))


def test_large_arrays_take_the_sum_and_agree():
    from pedstream.dsp import checks

    x = np.full(checks._SUM_FROM + 7, np.finfo(np.float32).max, dtype=np.float32)  # the sum overflows
    assert all_finite(x)
    x[-1] = np.nan
    assert not all_finite(x)
    y = np.zeros(checks._SUM_FROM, dtype=np.float64)
    y[123] = -np.inf
    assert not all_finite(y) and all_finite(np.zeros(3, dtype=np.int64))
