"""benchmarks/banked_schedule.py: its lane x bank schedules are what it says -- every weight once,
no bank twice in a step, max(K, largest bank load) steps -- so its padding figures can be believed."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import benchmark_scripts


BENCH = benchmark_scripts.load("banked_schedule")  # once: hypothesis runs a test's body many times


@settings(max_examples=60, deadline=None)
@given(lanes=st.integers(1, 12), banks=st.integers(1, 24), k=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_every_weight_once_no_bank_twice_in_a_step_in_koenigs_bound(lanes, banks, k, seed):
    rng = np.random.default_rng(seed)
    cin = max(k, 1 + int(rng.integers(0, 64)))
    channels = np.stack([np.sort(rng.choice(cin, size=k, replace=False)) for _ in range(lanes)])
    loads = BENCH.bank_loads(channels, banks)
    assert (loads.sum(axis=1) == k).all()
    steps = BENCH.schedule(loads)
    assert len(steps) == max(k, int(loads.sum(axis=0).max()))
    BENCH.check(loads, steps)


def test_a_crowded_bank_sets_the_length_and_the_check_catches_a_clash():
    # three lanes whose weights all lie in bank 0: three steps a weight, one lane a step
    loads = np.array([[2, 0], [2, 0], [2, 1]])
    steps = BENCH.schedule(loads)
    assert len(steps) == 6 and (np.sort(steps[:, 2]) == [-1, -1, -1, 0, 0, 1]).all()
    BENCH.check(loads, steps)
    clash = steps.copy()
    t = next(i for i in range(len(clash)) if clash[i, 0] == 0)
    clash[t, 1] = 0  # lane 1 reads bank 0 in the step lane 0 does
    with pytest.raises(AssertionError, match="two lanes read one bank"):
        BENCH.check(loads, clash)
    with pytest.raises(AssertionError, match="read twice or never"):
        BENCH.check(loads, np.where(steps == 1, -1, steps))


def test_banks_of_a_layer_are_its_channels_mod_b():
    channels = np.array([[0, 3, 4, 7], [1, 2, 5, 6]])
    assert BENCH.bank_loads(channels, 4).tolist() == [[2, 0, 0, 2], [0, 2, 2, 0]]
