"""Pruning schemes keep their invariants; schedules and the sparsifier lifecycle (torch.ao.pruning's)."""
from __future__ import annotations

import copy

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
    cubic = pruning.Cubic(0.0, 0.5, 0.0)
    assert cubic(0.9, 0.0) == 0.0
    assert cubic(0.9, 0.5) == pytest.approx(0.9)
    assert cubic(0.9, 1.0) == pytest.approx(0.9)
    assert cubic(0.9, 0.25) == pytest.approx(0.9 * (1 - 0.5**3))
    values = [cubic(0.9, t / 100) for t in range(101)]
    assert values == sorted(values)
    assert pruning.OneShot(0.2)(0.9, 0.1) == 0.0 and pruning.OneShot(0.2)(0.9, 0.3) == 0.9


def test_schedules_take_their_defaults_from_the_config_schema():
    """One default per key (issue 28): the schedule classes restate none of config.Schedule's
    (Cubic's end once said 0.5 where the schema says 0.6), and a schedule section the schema
    fills is what make_schedule builds."""
    import inspect

    from sentei.training import config

    for cls, keys in ((pruning.Cubic, set(config.SCHEDULE) - {"type"}), (pruning.OneShot, set(config.ONESHOT_KEYS) - {"type"})):
        params = dict(inspect.signature(cls).parameters)
        assert set(params) == keys, cls
        assert all(p.default is inspect.Parameter.empty for p in params.values()), f"{cls.__name__} restates a default"
    for given in ({}, {"schedule": {"start": 0.1}}, {"schedule": {"type": "oneshot"}}):
        schedule = config.fill(given, config.Compress)["schedule"]
        built = pruning.make_schedule(schedule)
        assert {k: getattr(built, k) for k in schedule if k != "type"} == {k: v for k, v in schedule.items() if k != "type"}
    assert pruning.make_schedule(config.defaults(config.Compress)["schedule"]).end == config.Schedule.end == 0.6


def test_sparsifier_lifecycle_overrides_and_squash():
    torch.manual_seed(0)
    net = FCN(TINY)
    sp = pruning.Sparsifier(pruning.FilterWise(), 0.9, {"conv1": 0.0, "classifier": 0.0}).prepare(net)
    net.sparsifier = sp  # as sentei's checkpoints' networks carry it
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
    twin = copy.deepcopy(net)  # a copied network's sparsifier is whole and masks the copy
    assert twin.sparsifier.current == 1.0 and twin.sparsifier.scheme.name == "filterwise"
    assert [m for _, m in twin.sparsifier.layers] == [twin.blocks[i][0] for i in (1, 2, 3)]
    twin.sparsifier.check()
    sp.squash_mask()
    assert not hasattr(conv2, "parametrizations") and sp.layers == []
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


def plain_net(seed=0):
    """Not sentei's network: no ``convs()``, torch's own modules only."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3, padding=1),
                               torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(16 * 4 * 4, 10))


PLAIN_CONFIG = [{"tensor_fqn": "2.weight"}, {"tensor_fqn": "5.weight", "sparsity_level": 0.5}]


def test_sparsifier_is_torchs_and_prunes_any_module_by_tensor_names():
    """A torch BaseSparsifier on an nn.Sequential, configured by tensor FQNs: FakeSparsity masks
    (kept in the model's state dict, as sentei's checkpoints hold them), K per filter everywhere."""
    from torch.ao.pruning import BaseSparsifier, FakeSparsity

    net = plain_net()
    sp = pruning.Sparsifier(pruning.FilterWise(), 0.75).prepare(net, PLAIN_CONFIG)
    assert isinstance(sp, BaseSparsifier)
    assert [(n, m) for n, m in sp.layers] == [("2", net[2]), ("5", net[5])]
    assert isinstance(net[2].parametrizations.weight[0], FakeSparsity) and not hasattr(net[0], "parametrizations")
    sp.step()
    for name, module, level in (("2", net[2], 0.75), ("5", net[5], 0.5)):
        nnz = pruning.nonzeros_per_filter(module.weight)
        assert torch.all(nnz == pruning.filter_k(module.weight[0].numel(), level)), name
    assert sp.current == 1.0
    assert {"2.parametrizations.weight.0.mask", "5.parametrizations.weight.0.mask"} <= set(net.state_dict())
    assert net(torch.randn(2, 3, 6, 6)).shape == (2, 10)
    # without a config: every Conv2d of the module, named by its path, overrides by that name
    sp = pruning.Sparsifier(pruning.FilterWise(), 0.5, {"0": 0.0}).prepare(plain_net())
    assert [n for n, _ in sp.layers] == ["2"]
    with pytest.raises(SenteiError, match=r"unknown layer\(s\) \['conv2'\]; layers are \['0', '2'\]"):
        pruning.Sparsifier(pruning.FilterWise(), 0.5, {"conv2": 0.0}).prepare(plain_net())
    with pytest.raises(SenteiError, match=r"unknown layer\(s\) \['0'\]; layers are \['2', '5'\]"):
        pruning.Sparsifier(pruning.FilterWise(), 0.5, {"0": 0.0}).prepare(plain_net(), PLAIN_CONFIG)
    with pytest.raises(SenteiError, match="layer 7: the model has no tensor '7.weight'"):
        pruning.Sparsifier(pruning.FilterWise(), 0.5).prepare(plain_net(), [{"tensor_fqn": "7.weight"}])


@pytest.mark.parametrize("scheme, level", [(pruning.FilterWise(), 0.9), (pruning.Unstructured(), 0.8),
                                           (pruning.GroupWise(8, "channels"), 0.75)])
def test_scheduler_steps_keep_the_invariant_after_every_step(scheme, level):
    """torch's loop (sparsifier.step, then scheduler.step) over a cubic ramp: every step's masks at
    the levels the scheduler set, checked; filter-wise: equal nonzeros in every filter, always."""
    net = plain_net()
    sp = pruning.Sparsifier(scheme, level).prepare(net, [{"tensor_fqn": "2.weight"}])
    scheduler = pruning.SparsityScheduler(sp, pruning.Cubic(0.0, 0.6, 0.0), epochs=10)
    levels = []
    for epoch in range(12):
        sp.step()
        sp.check()
        levels.append(sp.state["2.weight"]["sparsity_level"])
        nnz = pruning.nonzeros_per_filter(net[2].weight)
        if scheme.name == "filterwise":
            assert torch.all(nnz == pruning.filter_k(72, levels[-1])), epoch
        with torch.no_grad():
            net[2].parametrizations.weight.original.add_(torch.randn(16, 8, 3, 3) * 0.1)
        scheduler.step()
    assert levels[0] == 0.0 and levels == sorted(levels) and levels[-1] == pytest.approx(level)
    assert scheduler.get_last_sl() == [level]
    twin = copy.deepcopy(sp)  # with its own copy of the model; its step is its own, not the scheduled one's
    before = sp._mask_buffer(net[2]).clone()
    twin.step(0.5)
    assert twin.model is not net and torch.equal(sp._mask_buffer(net[2]), before)
    assert sp.state["2.weight"]["sparsity_level"] == levels[-1] and sp._step_count == 12


def test_scheduler_levels_are_the_training_loops_bit_for_bit():
    """step(t), t in fractional epochs: each level is target * schedule(1.0, t / epochs), the very
    product sentei's loop always computed; step() counts whole epochs like torch's schedulers."""
    net = FCN(TINY)
    sp = pruning.Sparsifier(pruning.FilterWise(), 0.9, {"conv1": 0.0, "conv3": 0.7}).prepare(net)
    cubic = pruning.Cubic(0.1, 0.7, 0.0)
    scheduler = pruning.SparsityScheduler(sp, cubic, epochs=7)
    for t in (0.0, 0.5, 1 + 1 / 3, 2.75, 4.9, 7.0):
        scheduler.step(t)
        frac = cubic(1.0, t / 7)
        assert sp.fraction == scheduler.fraction_at(t) == frac
        assert [g["sparsity_level"] for g in sp.groups] == [{"conv3": 0.7}.get(n, 0.9) * frac for n, _ in sp.layers]
        sp.step()
        assert sp.current == frac
    ref = copy.deepcopy(net)
    pruning.Sparsifier(pruning.FilterWise(), 0.9, {"conv1": 0.0, "conv3": 0.7}).prepare(ref).step(frac)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), ref.state_dict().values()))
    sp.current = 0.25  # resumed from a checkpoint: a new scheduler still aims at the targets
    resumed = pruning.SparsityScheduler(sp, cubic, epochs=7)
    resumed.step(3.0)
    assert [g["sparsity_level"] for g in sp.groups] == [{"conv3": 0.7}.get(n, 0.9) * cubic(1.0, 3 / 7)
                                                        for n, _ in sp.layers]
    counted = pruning.SparsityScheduler(pruning.Sparsifier(pruning.FilterWise(), 0.9).prepare(FCN(TINY)),
                                        cubic, epochs=7)
    with pytest.warns(UserWarning, match="before `sparsifier.step"):  # counted: torch's order warning stays
        for _ in range(3):
            counted.step()
    assert counted.last_epoch == 3 and counted.sparsifier.fraction == cubic(1.0, 3 / 7)
    with pytest.raises(SenteiError, match="over 0 epochs"):
        pruning.SparsityScheduler(sp, cubic, epochs=0)


def test_squash_mask_leaves_plain_weights_with_the_same_zeros():
    net = plain_net()
    sp = pruning.Sparsifier(pruning.FilterWise(), 0.8).prepare(net, PLAIN_CONFIG)
    sp.step()
    with torch.no_grad():  # as AdamW's momentum does: pruned weights drift off zero under their masks
        for module in (net[2], net[5]):
            module.parametrizations.weight.original.add_(0.01)
    kept = {fqn: sp._mask_buffer(module).bool().clone() for fqn, module in (("2", net[2]), ("5", net[5]))}
    masked = {fqn: net[int(fqn)].weight.detach().clone() for fqn in kept}
    sp.squash_mask()
    for fqn, mask in kept.items():
        module = net[int(fqn)]
        assert not hasattr(module, "parametrizations") and isinstance(module.weight, torch.nn.Parameter)
        assert torch.equal(module.weight != 0, mask) and torch.equal(module.weight.detach(), masked[fqn]), fqn
    assert "2.weight" in net.state_dict() and sp.layers == []
    sp.step()  # nothing left to mask
    sp.check()


def test_state_dicts_round_trip():
    """The sparsifier's state (masks, levels, the fraction) and the scheduler's (its time) load
    into a fresh pair on another copy of the network, which then steps the same way."""
    net = plain_net()
    sp = pruning.Sparsifier(pruning.FilterWise(), 0.9).prepare(net, PLAIN_CONFIG)
    scheduler = pruning.SparsityScheduler(sp, pruning.Cubic(0.0, 0.5, 0.0), epochs=4)
    scheduler.step(1.25)
    sp.step()
    saved_sp, saved_sch = sp.state_dict(), copy.deepcopy(scheduler.state_dict())
    assert saved_sch["last_epoch"] == 1 and saved_sch["time"] == 1.25 and "sl_lambdas" not in saved_sch
    other = plain_net(seed=1)  # other weights: the masks come from the state, not from the magnitudes
    sp2 = pruning.Sparsifier(pruning.FilterWise(), 0.9).prepare(other, PLAIN_CONFIG)
    sp2.load_state_dict(saved_sp)
    scheduler2 = pruning.SparsityScheduler(sp2, pruning.Cubic(0.0, 0.5, 0.0), epochs=4)
    scheduler2.load_state_dict(saved_sch)
    for fqn in ("2", "5"):
        assert torch.equal(sp._mask_buffer(net[int(fqn)]), sp2._mask_buffer(other[int(fqn)])), fqn
    assert sp2.current == sp.current
    assert sp2.state["2.weight"]["sparsity_level"] == sp.state["2.weight"]["sparsity_level"]
    sp2.check()
    assert "mask" in saved_sp["state"]["2.weight"]  # the caller's dict is left whole
    for s, sch in ((sp, scheduler), (sp2, scheduler2)):
        sch.step(2.0)
        s.step()
    assert [g["sparsity_level"] for g in sp.groups] == [g["sparsity_level"] for g in sp2.groups]
    assert sp2.current == sp.current == 1.0


def test_every_step_checks_the_schemes_invariant():
    """A mask that breaks its scheme's invariant is refused at the step that makes it, naming the layer."""
    class Uneven(pruning.FilterWise):
        def mask(self, weight, sparsity):
            mask = super().mask(weight, sparsity)
            mask.reshape(mask.shape[0], -1)[0, mask.reshape(mask.shape[0], -1)[0].nonzero()[0]] = 0
            return mask

    sp = pruning.Sparsifier(Uneven(), 0.5).prepare(plain_net(), [{"tensor_fqn": "2.weight", "name": "conv2"}])
    with pytest.raises(SenteiError, match="layer conv2: filter-wise invariant broken: nonzeros per filter 35..36"):
        sp.step()
