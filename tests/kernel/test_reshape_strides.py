"""reshape_strides agrees with NumPy's no-copy reshape on every layout hypothesis draws."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from symexpr.kernel.lowerings import reshape_strides

_DIMS = st.lists(st.sampled_from([0, 1, 2, 3, 4, 6]), min_size=0, max_size=4)


@st.composite
def _view_and_new_shape(draw):
    shape = tuple(draw(_DIMS))
    size = int(np.prod(shape, dtype=np.int64))
    perm = draw(st.permutations(range(len(shape))))
    steps = tuple(draw(st.sampled_from([1, 1, 2, -1])) for _ in shape)
    dense = np.zeros(tuple(shape[p] * abs(steps[p]) for p in perm), dtype=np.int8).transpose(np.argsort(perm))
    view = dense[tuple(slice(None, None, s) for s in steps)]
    assert view.shape == shape
    # a new shape of the same size: split size into factors, with unit dims sprinkled in
    new = []
    rest = size
    for f in draw(st.lists(st.sampled_from([1, 2, 3, 4, 6]), max_size=4)):
        if rest and rest % f == 0:
            new.append(f)
            rest //= f
    new.append(rest)
    order = draw(st.permutations(new))
    return view, tuple(order)


@settings(max_examples=400, deadline=None)
@given(_view_and_new_shape())
def test_matches_numpy_nocopy_reshape(case):
    view, new_shape = case
    strides = tuple(s // view.itemsize for s in view.strides)
    got = reshape_strides(view.shape, strides, new_shape)
    try:
        want = view.reshape(new_shape, copy=False)
    except ValueError:
        assert got is None, f"{view.shape}/{strides} -> {new_shape}: NumPy needs a copy, got strides {got}"
        return
    assert got is not None, f"{view.shape}/{strides} -> {new_shape}: NumPy views it, got None"
    if want.size == 0:
        return
    want_strides = tuple(s // view.itemsize for s in want.strides)
    # strides of unit dims are never used to address anything
    for d, g, w in zip(new_shape, got, want_strides):
        if d != 1:
            assert g == w, f"{view.shape}/{strides} -> {new_shape}: {got} != {want_strides}"


def test_scalar_to_unit_dims():
    assert reshape_strides((), (), (1, 1)) == (1, 1)
