"""benchmarks/allocator_optimality.py: its branch and bound finds what trying every
combination of plans finds, so its "no allocator does better" can be believed."""
import numpy as np

from sentei.host.modelfile.synthetic import LayerSpec, random_model
from sentei.overlay import perf
from tests import benchmark_scripts


def test_branch_and_bound_equals_trying_every_combination():
    bench = benchmark_scripts.load("allocator_optimality")
    model = random_model(seed=2, height=16, width=16,
                         specs=(LayerSpec(4, density=1.0), LayerSpec(6, density=0.3), LayerSpec(3, kernel=1)))
    board = perf.load_board("pynqz2")  # no URAM: a design's resources are the sum of its layers'
    fixed = max(perf.fixed_stages(model).values())
    # every combination of the layers' plans at once (24 x 35 x 22 x 25): its stages and resources
    cycles, used = np.zeros(1, dtype=np.int64), np.array([[perf.SHELL_RESOURCES[k] for k in perf.BUDGET_FIELDS]])
    for n in range(len(model.layers)):
        opts = perf.layer_options(model, n)
        c = np.array([perf.conv_stage_cycles(model, n, p) for p in opts])
        r = np.array([[perf.layer_resources(model, n, p, board).get(k, 0) for k in perf.BUDGET_FIELDS] for p in opts])
        cycles = np.maximum(cycles[:, None], c[None, :]).ravel()
        used = (used[:, None, :] + r[None, :, :]).reshape(-1, len(perf.BUDGET_FIELDS))
    found = []
    for lut, dsp in ((9000, 32), (9500, 32), (10000, 24), (10000, 32), (11000, 40), (16000, 60)):
        limits = {"dsp": dsp, "bram18": 20, "uram": 0, "lut": lut, "ff": 30000}
        fits = (used <= np.array([limits[k] for k in perf.BUDGET_FIELDS])).all(axis=1)
        best = int(max(cycles[fits].min(), fixed)) if fits.any() else None
        got = bench.best_interval(model, board, limits, seconds=60)
        if got.get("fits"):
            got = {"fits": True, "interval_cycles": max(got["interval_cycles"], fixed)}
        assert got == ({"fits": False} if best is None else {"fits": True, "interval_cycles": best}), limits
        if best is not None:  # and the allocator reaches it on this model (the benchmark's question)
            assert perf.pipeline_interval(model, perf._allocate(model, board, limits)) == best, limits
        found.append(best)
    assert found[0] is None and len(set(found[1:])) == 5  # the limits matter: five intervals, one misfit
