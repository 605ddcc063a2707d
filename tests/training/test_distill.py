"""Distillation loss: zero for a perfect student, void pixels ignored."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from sentei.training.distill import Distillation, kd_kl, segmentation_loss  # noqa: E402


def test_kd_is_zero_for_identical_logits_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(2, 11, 4, 6, generator=g)
    labels = torch.randint(0, 11, (2, 32, 48), generator=g)
    assert float(kd_kl(t, t, labels, 2.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(kd_kl(t + torch.randn(2, 11, 4, 6, generator=g), t, labels, 2.0)) > 0.01


def test_void_pixels_are_ignored():
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(1, 11, 4, 6, generator=g), torch.randn(1, 11, 4, 6, generator=g)
    labels = torch.full((1, 32, 48), 11)
    labels[:, :16] = 3
    keep = (labels != 11).float()
    up = [torch.nn.functional.interpolate(x, size=(32, 48), mode="bilinear", align_corners=False) for x in (s, t)]
    kl = (up[1].softmax(1) * (up[1].log_softmax(1) - up[0].log_softmax(1))).sum(1)
    assert float(kd_kl(s, t, labels, 1.0)) == pytest.approx(float((kl * keep).sum() / keep.sum()), rel=1e-5)
    all_void = torch.full((1, 32, 48), 11)
    assert float(kd_kl(s, t, all_void, 1.0)) == 0.0
    assert float(segmentation_loss(s, labels, None)) == pytest.approx(
        float(torch.nn.functional.cross_entropy(
            torch.nn.functional.interpolate(s, size=(32, 48), mode="bilinear", align_corners=False)[:, :, :16],
            labels[:, :16])), rel=1e-5)


def test_mixture_weights():
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(1, 11, 4, 6, generator=g), torch.randn(1, 11, 4, 6, generator=g)
    labels = torch.randint(0, 11, (1, 32, 48), generator=g)
    d = Distillation(alpha=0.25, temperature=3.0)
    total, parts = d.loss(s, labels, None, t)
    assert float(total) == pytest.approx(0.75 * float(parts["ce"]) + 0.25 * float(parts["kd"]), rel=1e-5)
    off, parts = Distillation(enabled=False).loss(s, labels, None, t)
    assert "kd" not in parts and float(off) == pytest.approx(float(parts["ce"]))


def test_the_loss_does_not_depend_on_the_logits_memory_layout():
    """Training runs NHWC (channels_last) on every device; the loss and its gradient are the NCHW ones."""
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(2, 11, 4, 6, generator=g), torch.randn(2, 11, 4, 6, generator=g)
    labels = torch.randint(0, 12, (2, 32, 48), generator=g)
    d = Distillation(alpha=0.7, temperature=2.0)
    results = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        sv = s.clone().contiguous(memory_format=fmt).requires_grad_()
        loss, _ = d.loss(sv, labels, torch.rand(11, generator=torch.Generator().manual_seed(4)),
                         t.contiguous(memory_format=fmt))
        loss.backward()
        results.append((float(loss.detach()), sv.grad.contiguous()))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-7)
