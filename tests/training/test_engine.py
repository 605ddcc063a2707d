"""training/engine.py: the exact integer path's labels are the reference engine's, float ties included."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sentei.host.modelfile import reference  # noqa: E402
from sentei.training import baseline  # noqa: E402


def near_ties(seed: int = 0) -> np.ndarray:
    """Logits of two classes at most one integer step apart (times an output scale): after
    upsampling their scores differ in the last bits of a float32 only."""
    rng = np.random.default_rng(seed)
    base = rng.integers(-50, 50, size=(1, 6, 8)).astype(np.float32)
    other = base + rng.integers(-1, 2, size=base.shape).astype(np.float32)
    return np.concatenate([base, other]) * np.float32(0.0371)


def test_integer_path_labels_are_the_reference_engines_where_torch_rounds_otherwise(monkeypatch):
    from sentei.training import engine as engine_module
    from sentei.training.engine import TorchEngine

    scores = near_ties()
    want = np.argmax(reference.upsample_bilinear(scores, 48, 64), axis=0)
    # a QAT engine whose exact path returns these scores for a 6x8 input
    eng = object.__new__(TorchEngine)
    eng.exact, eng.input_size = True, (6, 8)
    eng.net = object.__new__(engine_module.QATNet)
    monkeypatch.setattr(TorchEngine, "logits", lambda self, frames: torch.from_numpy(scores[None]))
    got = eng.predict(np.zeros((6, 8, 3), np.uint8), size=(48, 64))
    assert got.dtype == np.uint8 and np.array_equal(got, want)
    # the case bites: torch's bilinear upsampling (what eval --backend torch used) labels some pixels otherwise
    torch_labels = baseline.labels(torch.from_numpy(scores[None]), 48, 64).numpy()
    assert 0 < np.count_nonzero(torch_labels != want) < 48 * 64 // 10
