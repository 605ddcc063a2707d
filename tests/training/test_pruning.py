"""Pruning schemes keep their invariants; schedules and the sparsifier lifecycle."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from sentei.errors import SenteiError  # noqa: E402
from sentei.training import pruning  # noqa: E402
from sentei.training.models import FCN  # noqa: E402

from .conftest import TINY  # noqa: E402


def weights(cout=16, cin=8, k=3, seed=0):
    return torch.randn(cout, cin, k, k, generator=torch.Generator().manual_seed(seed))


def test_filterwise_keeps_exactly_k_largest_per_filter():
    w = weights()
    mask = pruning.FilterWise().mask(w, 0.9)
    k = pruning.filter_k(72, 0.9)
    assert k == 7  # floor(0.1 * 72): at least 90 % zero
    counts = mask.reshape(16, -1).sum(1)
    assert torch.all(counts == k)
    flat, m = w.abs().reshape(16, -1), mask.reshape(16, -1).bool()
    # every kept weight is at least as large as every dropped one of the same filter
    assert torch.all(flat.masked_fill(~m, float("inf")).min(1).values >= flat.masked_fill(m, 0).max(1).values)


def test_groupwise_same_count_in_every_group():
    w = weights(8, 16, 3)
    scheme = pruning.GroupWise(16)
    mask = scheme.mask(w, 0.75)
    counts = mask.reshape(-1, 16).sum(1)
    assert torch.all(counts == 4)
    scheme.check(mask, 0.75, "x")
    with pytest.raises(SenteiError, match="multiple of the group size"):
        pruning.GroupWise(10).mask(w, 0.5)


def test_groupwise_channels_layout_is_kangs_channels_at_each_tap():
    """Kang's groups: G consecutive input channels at one kernel position keep the same count."""
    w = weights(8, 16, 3)
    scheme = pruning.GroupWise(8, "channels")
    mask = scheme.mask(w, 0.75)
    at_taps = mask.permute(0, 2, 3, 1).reshape(-1, 8)  # (co, ky, kx, ci) runs of 8 channels
    assert torch.all(at_taps.sum(1) == 2)
    scheme.check(mask, 0.75, "x")
    # the largest magnitudes of each group are the kept ones
    mags, kept = w.abs().permute(0, 2, 3, 1).reshape(-1, 8), at_taps.bool()
    assert torch.all(mags.masked_fill(~kept, float("inf")).min(1).values >= mags.masked_fill(kept, 0).max(1).values)
    # not the flat layout's groups: those counts are unequal for the same weights
    flat_counts = mask.reshape(-1, 8).sum(1)
    assert int(flat_counts.max() - flat_counts.min()) > 0
    with pytest.raises(SenteiError, match="group-wise invariant broken: nonzeros per group of 8 \\(channels\\)"):
        scheme.check(pruning.GroupWise(8, "flat").mask(w, 0.75), 0.75, "x")
    with pytest.raises(SenteiError, match="16 input channels are not a multiple of the group size 6"):
        pruning.GroupWise(6, "channels").mask(w, 0.5)
    with pytest.raises(SenteiError, match="group layout 'taps'"):
        pruning.GroupWise(8, "taps")


def test_nm_two_of_four_over_input_channels():
    w = weights(4, 8, 3)
    mask = pruning.NM(2, 4).mask(w, 0.5)
    groups = mask.permute(0, 2, 3, 1).reshape(-1, 4)
    assert torch.all(groups.sum(1) == 2)
    assert float(mask.mean()) == 0.5


def test_unstructured_one_global_threshold():
    a, b = weights(4, 4, 3, 1), weights(4, 4, 3, 2) * 10
    ma, mb = pruning.Unstructured().global_masks([a, b], [0.5, 0.5])
    assert int((ma == 0).sum() + (mb == 0).sum()) == int(round(0.5 * 144)) * 2
    # the small-magnitude layer loses more than half, the large one less
    assert float(ma.mean()) < 0.5 < float(mb.mean())


def test_unstructured_per_layer_ranking_prunes_each_layer_to_its_own_target():
    """ranking layer: the control for balance alone -- every layer exactly at its sparsity (an
    override honoured), the smallest magnitudes of that layer gone, filters left unequal."""
    net = FCN(TINY)
    sparsifier = pruning.Sparsifier(pruning.make_scheme("unstructured", ranking="layer"), 0.75,
                                    {"conv1": 0.0, "conv3": 0.5}).prepare(net)
    with torch.no_grad():
        net.blocks[3][0].weight.mul_(10)  # a global threshold would spare this layer
    sparsifier.step(1.0)
    for name, conv in sparsifier.layers:
        target = {"conv3": 0.5}.get(name, 0.75)
        w, m = conv.parametrizations.weight.original.detach(), sparsifier._mask_buffer(conv).bool()
        assert int((~m).sum()) == round(target * m.numel()), name
        assert float(w.abs()[m].min()) >= float(w.abs()[~m].max())
    counts = pruning.nonzeros_per_filter(net.blocks[2][0].weight)
    assert int(counts.max() - counts.min()) > 0  # unbalanced: what filter-wise pruning removes
    with pytest.raises(SenteiError, match="per-layer invariant broken: 1 weights pruned, expected 2"):
        pruning.Unstructured("layer").check(torch.tensor([1.0, 1.0, 0.0, 1.0]), 0.5, "x")
    with pytest.raises(SenteiError, match="ranking 'local'"):
        pruning.Unstructured("local")


def test_check_names_the_layer():
    mask = torch.ones(4, 2, 3, 3)
    mask[0, 0, 0, 0] = 0
    with pytest.raises(SenteiError, match="layer conv7: filter-wise invariant"):
        pruning.FilterWise().check(mask, 0.5, "conv7")


def test_cubic_schedule():
    cubic = pruning.Cubic(0.0, 0.5)
    assert cubic(0.9, 0.0) == 0.0
    assert cubic(0.9, 0.5) == pytest.approx(0.9)
    assert cubic(0.9, 1.0) == pytest.approx(0.9)
    assert cubic(0.9, 0.25) == pytest.approx(0.9 * (1 - 0.5**3))
    values = [cubic(0.9, t / 100) for t in range(101)]
    assert values == sorted(values)
    assert pruning.OneShot(0.2)(0.9, 0.1) == 0.0 and pruning.OneShot(0.2)(0.9, 0.3) == 0.9


def test_sparsifier_lifecycle_overrides_and_squash():
    torch.manual_seed(0)
    net = FCN(TINY)
    sp = pruning.Sparsifier(pruning.FilterWise(), 0.9, {"conv1": 0.0, "classifier": 0.0}).prepare(net)
    assert [n for n, _ in sp.layers] == ["conv2", "conv3", "conv4"]
    sp.step(1.0)
    for name, conv in sp.layers:
        nnz = pruning.nonzeros_per_filter(conv.weight)
        assert torch.all(nnz == pruning.filter_k(conv.weight[0].numel(), 0.9)), name
    assert pruning.sparsity_of(net.blocks[0][0].weight) == 0.0  # conv1 stays dense
    # gradients never revive a pruned weight
    out = net(torch.randint(0, 256, (2, 3, 32, 48)).float())
    out.sum().backward()
    conv2 = net.blocks[1][0]
    grad = conv2.parametrizations.weight.original.grad
    assert torch.all(grad[conv2.parametrizations.weight[0].mask == 0] == 0)
    sp.squash()
    assert not hasattr(conv2, "parametrizations")
    assert pruning.sparsity_of(conv2.weight) >= 0.9
    with pytest.raises(SenteiError, match="unknown layer"):
        pruning.Sparsifier(pruning.FilterWise(), 0.9, {"conv9": 0.0}).prepare(FCN(TINY))


def test_unstructured_refuses_a_per_layer_sparsity_it_cannot_honour():
    """One global threshold has no per-layer target: an override other than 0 (dense) or the
    run's own sparsity was folded into the global budget in silence."""
    scheme = pruning.make_scheme("unstructured")
    with pytest.raises(SenteiError, match=r"^unstructured: a per-layer sparsity \(conv3: 0.5\) has no meaning under "
                                          r"one global threshold; keep a layer dense \(0\) or drop the override$"):
        pruning.Sparsifier(scheme, 0.9, {"conv1": 0.0, "conv3": 0.5})
    pruning.Sparsifier(scheme, 0.9, {"conv1": 0.0, "conv2": 0.9})  # dense, or the run's own: fine
    pruning.Sparsifier(pruning.make_scheme("filterwise"), 0.9, {"conv3": 0.5})  # per-layer schemes honour it
