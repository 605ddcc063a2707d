"""sentei.host.modelfile.schedule: lane x bank schedules that are what they say -- every weight
once, no bank twice in a step, max(K, largest bank load) steps -- and the blob of a shared-window
layer in that order: each filter's entries permuted, nothing else moved."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentei.errors import SenteiError
from sentei.host.modelfile import reference
from sentei.host.modelfile import schedule as sched
from sentei.host.modelfile.schema import blob_offsets, weight_blob
from sentei.host.modelfile.synthetic import random_frame
from sentei.host.runtime.emulated_overlay import model_from_blob
from sentei.overlay import perf
from tests.overlay.csim_models import odd, tiny


@settings(max_examples=60, deadline=None)
@given(lanes=st.integers(1, 12), banks=st.integers(1, 24), k=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_every_weight_once_no_bank_twice_in_a_step_in_koenigs_bound(lanes, banks, k, seed):
    rng = np.random.default_rng(seed)
    cin = max(k, 1 + int(rng.integers(0, 64)))
    channels = np.stack([np.sort(rng.choice(cin, size=k, replace=False)) for _ in range(lanes)])
    loads = sched.bank_loads(channels, banks)
    assert (loads.sum(axis=1) == k).all()
    steps = sched.schedule(loads)
    assert len(steps) == max(k, int(loads.sum(axis=0).max()))
    sched.check(loads, steps)


def test_a_crowded_bank_sets_the_length_and_the_check_catches_a_clash():
    # three lanes whose weights all lie in bank 0: three steps a weight, one lane a step
    loads = np.array([[2, 0], [2, 0], [2, 1]])
    steps = sched.schedule(loads)
    assert len(steps) == 6 and (np.sort(steps[:, 2]) == [-1, -1, -1, 0, 0, 1]).all()
    sched.check(loads, steps)
    clash = steps.copy()
    t = next(i for i in range(len(clash)) if clash[i, 0] == 0)
    clash[t, 1] = 0  # lane 1 reads bank 0 in the step lane 0 does
    with pytest.raises(AssertionError, match="two lanes read one bank"):
        sched.check(loads, clash)
    with pytest.raises(AssertionError, match="read twice or never"):
        sched.check(loads, np.where(steps == 1, -1, steps))


def test_banks_of_a_layer_are_its_channels_mod_b():
    channels = np.array([[0, 3, 4, 7], [1, 2, 5, 6]])
    assert sched.bank_loads(channels, 4).tolist() == [[2, 0, 0, 2], [0, 2, 2, 0]]
    # what a position is banked by: t = ci*k + ky of idx = (ci*k + ky)*k + kx
    assert sched.tap_channels(np.array([0, 2, 3, 5, 26]), 3).tolist() == [0, 0, 1, 1, 8]


@pytest.mark.parametrize("make, index, lanes", [(tiny, 1, 4), (tiny, 2, 16), (odd, 3, 4), (odd, 0, 6)])
def test_filter_order_reads_no_bank_twice_in_a_step(make, index, lanes):
    model = make()
    layer = model.layers[index]
    banks = perf.shared_banks(model, index, lanes, 1)
    assert banks is not None
    order = sched.filter_order(layer.indices, layer.kernel, lanes, banks)
    k = layer.k_nonzero
    assert (np.sort(order, axis=1) == np.arange(k)).all()  # each filter's weights, each once
    bank = np.take_along_axis(layer.indices.astype(np.int64) // layer.kernel, order, axis=1) % banks
    for start in range(0, layer.out_channels, lanes):
        for j in range(k):  # step j of the fold: the lanes' banks differ
            step = bank[start:start + lanes, j]
            assert len(set(step.tolist())) == len(step)


def test_scheduled_blob_permutes_within_filters_and_computes_the_same():
    model = odd()
    shared = [{"layer": 0, "lanes": 6, "banks": perf.shared_banks(model, 0, 6, 1)},
              {"layer": 3, "lanes": 4, "banks": perf.shared_banks(model, 3, 4, 1)}]
    plain = weight_blob(model)
    blob = sched.scheduled_blob(model, plain, shared)
    assert blob.shape == plain.shape and not np.array_equal(blob, plain)
    offsets = blob_offsets(model)
    moved = np.flatnonzero(blob != plain)
    for n in (0, 3):  # only the entries of the two layers move, each within its filter
        layer = model.layers[n]
        first = offsets[n] + 3 * layer.out_channels
        got = blob[first:first + layer.indices.size].reshape(layer.indices.shape)
        want = plain[first:first + layer.indices.size].reshape(layer.indices.shape)
        assert (np.sort(got, axis=1) == np.sort(want, axis=1)).all()
    inside = [(offsets[n] + 3 * model.layers[n].out_channels,
               offsets[n] + 3 * model.layers[n].out_channels + model.layers[n].indices.size) for n in (0, 3)]
    assert all(any(a <= w < b for a, b in inside) for w in moved)
    # the sums do not depend on the order: the blob decoded as the accelerator does computes the same
    frame = random_frame(3, model.input.height, model.input.width)
    np.testing.assert_array_equal(reference.run(model_from_blob(model, blob), frame), reference.run(model, frame))
    assert sched.scheduled_blob(model, plain, []) is plain


def test_weights_that_need_more_than_k_steps_are_refused_in_one_line():
    model = tiny()
    layer = model.layers[1]
    with pytest.raises(SenteiError, match=r"more than K = \d+: the bitstream was built for other weights"):
        sched.filter_order(layer.indices, layer.kernel, 8, 8, layer.name)  # 8 lanes in 8 banks: too crowded
    with pytest.raises(SenteiError, match="network.json does not belong"):
        sched.scheduled_blob(model, weight_blob(model), [{"layer": 9, "lanes": 2, "banks": 4}])
