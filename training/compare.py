"""Layer-by-layer comparison of the QAT network and the integer reference engine.

Both run the same frame; for every layer the integer activations are compared element by
element (exact-match percentage, largest absolute difference). The first layer that
diverges is where to look: the input quantization, a requantization constant, or an
accumulator that float arithmetic did not hold exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sentei.host.modelfile import reference
from sentei.host.modelfile.schema import Model
from sentei.training import baseline


@dataclass
class LayerAgreement:
    name: str
    shape: tuple
    exact: float  # fraction of equal integers
    max_abs: int


def compare(qat, model: Model, frame: np.ndarray, exact: bool = True) -> tuple[list[LayerAgreement], float]:
    """Per-layer agreement of ``qat`` (a :class:`QATNet`) with the reference engine on ``frame``.

    Returns the rows (input first, logits last) and the fraction of pixels whose label agrees.
    ``exact=False`` compares the training (float, straight-through) path instead.
    """
    ref_logits, ref_acts = reference.run(model, frame, return_all=True)
    x = torch.from_numpy(np.array(frame, dtype=np.uint8)).permute(2, 0, 1)[None]
    device = next(qat.parameters()).device
    with torch.no_grad():
        qat.eval()
        logits, acts = qat(x.to(device), exact=exact, return_acts=True)
    names = ["input"] + [layer.name for layer in model.layers]
    rows = []
    for name, ref, got in zip(names, ref_acts, acts):
        got = torch.round(got.double()).to(torch.int64)[0].cpu().numpy()
        ref = ref.astype(np.int64)
        if got.shape != ref.shape:
            rows.append(LayerAgreement(name, tuple(ref.shape), 0.0, -1))
            continue
        diff = np.abs(got - ref)
        rows.append(LayerAgreement(name, tuple(ref.shape), float(np.mean(diff == 0)), int(diff.max())))
    ref_labels = reference.labels_from_logits(model, ref_logits)
    labels = baseline.labels(logits.cpu(), *frame.shape[:2]).numpy()
    return rows, float(np.mean(labels == ref_labels))


def first_divergence(rows: list[LayerAgreement]) -> LayerAgreement | None:
    """The first row whose integers differ (or whose shapes do), or None when every layer is bit-exact."""
    return next((r for r in rows if r.exact < 1.0 or r.max_abs != 0), None)


def format_rows(rows: list[LayerAgreement], label_agreement: float) -> str:
    """A table of the rows; the first diverging layer is marked."""
    first = first_divergence(rows)
    lines = [f"{'layer':<14}{'shape':<18}{'exact %':>10}{'max |diff|':>12}"]
    for r in rows:
        mark = "   <-- first divergence" if r is first else ""
        lines.append(f"{r.name:<14}{'x'.join(map(str, r.shape)):<18}{100 * r.exact:>10.4f}{r.max_abs:>12d}{mark}")
    lines.append(f"labels agree on {100 * label_agreement:.4f} % of pixels"
                 + ("" if first else " (every layer bit-exact)"))
    return "\n".join(lines)
