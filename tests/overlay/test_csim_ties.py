"""The HLS requantizer's rounding at ties (issue 26): on the tie-heavy model the C-simulation
must equal the reference bit for bit; round-half-even or round-toward-zero in requant.hpp fails
it (benchmarks/mutation_check.py)."""
from __future__ import annotations

import numpy as np

from sentei.host.modelfile import reference
from sentei.host.emulator.engine import Emulator
from sentei.overlay import csim
from tests.overlay.tie_models import tie_fraction, tie_frames, tie_model


def test_tie_model_is_tie_heavy_and_the_emulator_agrees():
    model = tie_model()
    frames = tie_frames(model)
    assert tie_fraction(model, frames[0]) > 0.2
    emu = Emulator(model)
    for frame in frames:
        np.testing.assert_array_equal(emu.run(frame), reference.run(model, frame))


def test_csim_rounds_ties_half_up_like_the_reference():
    model = tie_model()
    report = csim.run_csim(model, tie_frames(model))
    assert report.errors == 0, [str(m) for m in report.mismatches]
    assert report.bit_exact
