"""The filter-wise balanced structured schemes of issue 30: ``pattern`` (PCONV's pattern library and
connectivity pruning) and ``smallworld`` (Krishnan et al.'s fixed small-world connectivity): exactly K
nonzeros in every filter after every step, their structure, and a tiny compress run whose model
file the reference engine, the emulator and the C-simulation of the HLS sources run bit for bit."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sentei.errors import SenteiError  # noqa: E402
from sentei.training import pruning  # noqa: E402
from sentei.training.models import FCN  # noqa: E402

from .conftest import TINY, compress_config, tiny_teacher  # noqa: E402


def weights(cout=16, cin=8, k=3, seed=0):
    return torch.randn(cout, cin, k, k, generator=torch.Generator().manual_seed(seed))


def kernels_of(mask):
    """0/1 ``[Cout, Cin, k*k]``."""
    return (mask.reshape(mask.shape[0], mask.shape[1], -1) != 0).float()


def ramp(scheme, level, steps=12, seed=0, net=None):
    """Prune ``net`` (the tiny FCN, conv1 and the classifier dense) along a cubic ramp with the
    weights moving between the steps; yields after every step."""
    net = net or FCN(TINY)
    torch.manual_seed(seed)
    sp = pruning.Sparsifier(scheme, level, {"conv1": 0.0, "classifier": 0.0}).prepare(net)
    scheduler = pruning.SparsityScheduler(sp, pruning.Cubic(0.0, 0.6, 0.0), epochs=steps - 2)
    for step in range(steps):
        sp.step()
        sp.check()
        yield sp, step
        with torch.no_grad():
            for _, module in sp.layers:
                raw = module.parametrizations.weight.original
                raw.add_(torch.randn_like(raw) * raw.abs().mean())
        scheduler.step()


# ---------------------------------------------------------------------------------------
# pattern


def test_pattern_library_is_learned_from_the_teachers_kernels():
    w = weights(32, 16)
    planted = torch.tensor([0, 1, 0, 1, 1, 1, 0, 0, 0], dtype=torch.float32)  # a cross without its bottom
    w.view(-1, 9)[::2] = w.view(-1, 9)[::2].abs() * 0.1 + planted * 5  # half the kernels: that pattern on top
    lib = pruning.Pattern(8, 4).library(w)
    assert lib.shape == (8, 9) and lib.dtype == torch.uint8
    assert torch.all(lib.sum(1) == 4) and len(torch.unique(lib, dim=0)) == 8
    assert torch.equal(lib[0].float(), planted)  # the most frequent first
    assert pruning.Pattern(5, 3).library(w).shape == (5, 9)  # library size and pattern size as configured
    assert pruning.Pattern(3, 4).library(weights(4, 4, k=1)).shape == (1, 1)  # a 1x1 kernel is its own pattern
    with pytest.raises(SenteiError, match="has 126 such patterns"):
        pruning.Pattern(127, 4)


@pytest.mark.parametrize("size, count, level", [(4, 8, 0.9), (3, 4, 0.75), (2, 6, 0.8)])
def test_pattern_keeps_k_per_filter_and_library_patterns_after_every_step(size, count, level):
    libraries = None
    for sp, step in ramp(pruning.Pattern(count, size), level):
        now = {name: sp.scheme_state(m)["patterns"].clone() for name, m in sp.layers}
        assert libraries is None or all(torch.equal(now[n], libraries[n]) for n in now)  # learned once
        libraries = now
        for (name, module), group in zip(sp.layers, sp.groups):
            lib, s = now[name], group["sparsity_level"]
            assert lib.shape == (count, 9)  # the library size as configured
            mask = sp._mask_buffer(module)
            cout, cin = mask.shape[:2]
            nnz = pruning.nonzeros_per_filter(module.weight)
            if s == 0:
                assert torch.all(nnz == cin * 9)
                continue
            n = pruning._kernels_kept(cin, 9, size, s)
            assert n == max(1, min(cin, pruning.filter_k(cin * 9, s) // size))
            assert torch.all(pruning.nonzeros_per_filter(mask) == n * size), (name, step)  # K, every filter
            assert torch.all(nnz <= n * size)
            taps = kernels_of(mask)
            assert torch.all((taps.sum(2) > 0).sum(1) == n), (name, step)  # kernels kept per filter: equal
            kept = taps.reshape(-1, 9)[taps.reshape(-1, 9).sum(1) > 0]
            assert (kept[:, None, :] == lib.float()[None]).all(2).any(1).all(), (name, step)  # a library pattern
    final = sp.groups[0]["sparsity_level"]
    assert final == pytest.approx(level)


def test_pattern_keeps_each_kernels_best_pattern_and_the_strongest_kernels():
    w = weights(6, 10)
    scheme = pruning.Pattern(8, 4)
    lib = scheme.library(w)
    mask = scheme.mask(w, 0.8, patterns=lib)
    energy = (w.reshape(6, 10, 9) ** 2) @ lib.float().T  # [co, ci, L]
    best = energy.max(2).values
    taps = kernels_of(mask)
    kept = taps.sum(2) > 0
    n = pruning._kernels_kept(10, 9, 4, 0.8)
    assert n == 4 and torch.all(kept.sum(1) == n)
    kept_pattern_energy = ((w.reshape(6, 10, 9) ** 2) * taps).sum(2)
    assert torch.allclose(kept_pattern_energy[kept], best[kept])
    assert torch.all(best.masked_fill(~kept, float("inf")).min(1).values >= best.masked_fill(kept, 0).max(1).values)


def test_pattern_check_refuses_what_breaks_the_invariant():
    w = weights()
    scheme = pruning.Pattern(4, 4)
    lib = scheme.library(w)
    mask = scheme.mask(w, 0.75, patterns=lib)
    scheme.check(mask, 0.75, "conv3", patterns=lib)
    other = mask.clone().reshape(16, 8, 9)
    co, ci = torch.nonzero(other.sum(2))[0].tolist()
    outside = next(p for p in pruning.Pattern(126, 4).library(w) if not (p == lib).all(1).any())
    other[co, ci] = outside.float()  # the same count, a pattern outside the library
    with pytest.raises(SenteiError, match="layer conv3: pattern invariant broken: 1 kept kernels are not a pattern"):
        scheme.check(other.reshape(mask.shape), 0.75, "conv3", patterns=lib)
    fewer = mask.clone()
    fewer.view(16, -1)[0, fewer.view(16, -1)[0].nonzero()[0]] = 0
    with pytest.raises(SenteiError, match="nonzeros per filter 15..16, expected exactly K = 16"):
        scheme.check(fewer, 0.75, "conv3", patterns=lib)
    with pytest.raises(SenteiError, match="not 4 distinct patterns of 4 of 9 taps"):
        scheme.mask(w, 0.75, patterns=torch.ones(4, 9, dtype=torch.uint8))  # a checkpoint's broken library


# ---------------------------------------------------------------------------------------
# smallworld


def test_smallworld_keeps_k_per_filter_and_its_fixed_structure_after_every_step():
    masks, orders = [], None
    for sp, step in ramp(pruning.SmallWorld(4, 0.2, seed=3), 0.85):
        now = {name: sp.scheme_state(m)["order"].clone() for name, m in sp.layers}
        assert orders is None or all(torch.equal(now[n], orders[n]) for n in now)
        orders = now
        for (name, module), group in zip(sp.layers, sp.groups):
            mask, s = sp._mask_buffer(module), group["sparsity_level"]
            cin = mask.shape[1]
            k = cin * 9 if s == 0 else pruning._kernels_kept(cin, 9, 9, s) * 9
            assert torch.all(pruning.nonzeros_per_filter(mask) == k), (name, step)
            taps = kernels_of(mask)
            assert torch.all((taps.sum(2) == 0) | (taps.sum(2) == 9))  # whole kernels
        masks.append([sp._mask_buffer(m).clone() for _, m in sp.layers])
    for earlier, later in zip(masks, masks[1:]):  # a ranking's prefixes: what goes never comes back
        assert all(torch.all(b <= a) for a, b in zip(earlier, later))
    # at the target the weights kept moving for two steps and the mask did not follow them
    assert all(torch.equal(a, b) for a, b in zip(masks[-1], masks[-2]))


def test_smallworld_mask_does_not_follow_the_magnitudes():
    net = FCN(TINY)
    sp = pruning.Sparsifier(pruning.SmallWorld(4, 0.1), 0.75, {"conv1": 0.0, "classifier": 0.0}).prepare(net)
    sp.step()
    before = [sp._mask_buffer(m).clone() for _, m in sp.layers]
    with torch.no_grad():
        for _, m in sp.layers:  # the pruned weights now the largest, the kept ones zero
            raw = m.parametrizations.weight.original
            raw.copy_((1 - sp._mask_buffer(m)) * 10 + torch.rand_like(raw))
    sp.step()
    assert all(torch.equal(a, sp._mask_buffer(m)) for a, (_, m) in zip(before, sp.layers))
    magnitude = pruning.FilterWise().mask(weights(16, 16), 0.75)
    with pytest.raises(SenteiError, match="layer conv3: small-world invariant broken: the mask is not the layer's"):
        sp.scheme.check(magnitude, 0.75, "conv3", **sp.scheme_state(dict(sp.layers)["conv3"]))


def test_smallworld_is_reproducible_with_its_seed():
    a, b, c = (pruning.SmallWorld(8, 0.1, seed).ranking(64, 64, "conv5") for seed in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, pruning.SmallWorld(8, 0.1, 0).ranking(64, 64, "conv6"))  # each layer its own
    nets = [FCN(TINY), FCN(TINY)]
    torch.manual_seed(1)
    nets[1].load_state_dict({k: torch.randn_like(v) if v.is_floating_point() else v
                             for k, v in nets[1].state_dict().items()})
    masks = []
    for net in nets:  # other weights, the same seed: the same connectivity
        sp = pruning.Sparsifier(pruning.SmallWorld(4, 0.3, 5), 0.8, {"conv1": 0.0}).prepare(net)
        sp.step()
        masks.append([sp._mask_buffer(m) for _, m in sp.layers])
    assert all(torch.equal(x, y) for x, y in zip(*masks))


def local_fraction(scheme, cout, cin, level):
    order = scheme.ranking(cout, cin, "conv5")
    taps = kernels_of(scheme.mask(torch.zeros(cout, cin, 3, 3), level, order=order))[..., 0]
    out_group, in_group = scheme.groups(cout, cin)
    local = out_group[:, None] == in_group[None, :]
    return float((taps.bool() & local).sum() / taps.sum())


def test_smallworld_is_clustered_with_a_few_long_links():
    """At 90 % on a 128x128 layer (12 kernels per filter, clusters of 16 channels): most links stay in
    the filter's cluster; rewiring makes the long ones."""
    assert local_fraction(pruning.SmallWorld(8, 0.0), 128, 128, 0.9) == 1.0  # a grouped convolution
    clustered = local_fraction(pruning.SmallWorld(8, 0.1), 128, 128, 0.9)
    assert 0.8 <= clustered < 1.0  # expected 0.9: local clusters plus a few random long links
    assert local_fraction(pruning.SmallWorld(8, 1.0), 128, 128, 0.9) == 0.0  # a random graph of long links
    sw = pruning.SmallWorld(8, 0.0)  # a group's filters share their local channels
    order = sw.ranking(128, 128, "conv5")
    assert torch.equal(order[:16, :12], order[:1, :12].expand(16, 12))
    assert set(order[0, :16].tolist()) == set(range(16))


def test_new_schemes_by_name_and_their_errors():
    assert isinstance(pruning.make_scheme("pattern", patterns=6, pattern_size=3), pruning.Pattern)
    sw = pruning.make_scheme("smallworld", clusters=4, rewire=0.2, seed=7)
    assert (sw.clusters, sw.rewire, sw.seed) == (4, 0.2, 7)
    with pytest.raises(SenteiError, match="rewiring probability 1.5"):
        pruning.SmallWorld(4, 1.5)
    with pytest.raises(SenteiError, match="nm, pattern or smallworld"):
        pruning.make_scheme("pconv")


def test_the_structure_is_saved_with_the_masks():
    """The library and the ranking are buffers of each layer's Mask: a network rebuilt from a
    state dict has them, not what its own weights would give."""
    for scheme, key in ((pruning.Pattern(8, 4), "patterns"), (pruning.SmallWorld(4, 0.5, 0), "order")):
        nets = [FCN(TINY), FCN(TINY)]
        sps = [pruning.Sparsifier(scheme, 0.8, {"conv1": 0.0}).prepare(net) for net in nets]
        sps[0].step()
        state = nets[0].state_dict()
        assert sum(k.endswith(f".parametrizations.weight.0.{key}") for k in state) == len(sps[0].layers)
        if key == "order":  # as if drawn with another seed
            sps[1].scheme_state(dict(sps[1].layers)["conv3"])["order"].copy_(torch.arange(16).flip(0))
        else:  # learned from other weights
            assert not torch.equal(sps[0].scheme_state(dict(sps[0].layers)["conv3"])["patterns"],
                                   sps[1].scheme_state(dict(sps[1].layers)["conv3"])["patterns"])
        nets[1].load_state_dict(state)
        for (_, a), (_, b) in zip(sps[0].layers, sps[1].layers):
            assert torch.equal(sps[0].scheme_state(a)[key], sps[1].scheme_state(b)[key])
        sps[1].current = 1.0  # as build_from_checkpoint says it
        sps[1].check()
        sps[1].step(1.0)
        assert all(torch.equal(sps[0]._mask_buffer(a), sps[1]._mask_buffer(b))
                   for (_, a), (_, b) in zip(sps[0].layers, sps[1].layers))


# ---------------------------------------------------------------------------------------
# a tiny compress run: export, sentei info, the reference engine, the emulator and the C-simulation


@pytest.fixture(scope="module")
def short_teacher(tmp_path_factory):
    """A 2-epoch tiny teacher: (run dir, data, config); what it learned does not matter here."""
    tdir = tmp_path_factory.mktemp("teacher")
    cfg, _, data = tiny_teacher(tdir, epochs=2)
    return tdir, data, cfg


@pytest.mark.slow
@pytest.mark.parametrize("scheme, extra", [("pattern", {"patterns": 6, "pattern_size": 4}),
                                           ("smallworld", {"clusters": 4, "rewire": 0.25})])
def test_compress_exports_a_balanced_model_the_engines_run_alike(short_teacher, tmp_path, capsys, scheme, extra):
    from sentei.cli import main
    from sentei.host.modelfile import schema as fmt
    from sentei.host.modelfile import reference
    from sentei.host.emulator.engine import Emulator
    from sentei.host.modelfile.synthetic import random_frame
    from sentei.overlay import csim
    from sentei.training import train

    tdir, data, tcfg = short_teacher
    cfg = compress_config(scheme, 0.75, epochs=(2, 1), **extra)
    cfg["model"] = tcfg["model"]
    result = train.compress(cfg, tdir / "teacher.pt", tmp_path, train.setup_env("cpu"), data)
    model = fmt.load(tmp_path / "model.sentei")
    pruned = model.layers[1:-1]
    assert [layer.scheme for layer in pruned] == [scheme] * 3 and model.layers[0].scheme == "dense"
    for layer in pruned:  # K per layer as for filterwise: the kept count of every filter, at most
        per_kernel = 4 if scheme == "pattern" else 9
        k = pruning._kernels_kept(layer.in_channels, 9, per_kernel, 0.75) * per_kernel
        nnz = layer.nonzeros_per_filter()
        assert layer.k_nonzero <= k and nnz.max() == layer.k_nonzero and layer.k_nonzero - nnz.min() <= 2
    assert result["min_pruned_sparsity"] >= 0.75
    frames = [random_frame(s, model.input.height, model.input.width) for s in range(2)]
    with Emulator(model) as emu:
        for frame in frames:
            assert np.array_equal(emu.run(frame), reference.run(model, frame))
    report = csim.run_csim(model, frames[:1], cache_dir=tmp_path / "csim")  # the HLS sources, C-simulated
    assert report.errors == 0 and report.bit_exact
    capsys.readouterr()
    assert main(["info", "--model", str(tmp_path / "model.sentei")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].endswith("scheme") and sum(line.endswith(f"  {scheme}") for line in lines) == 3
