"""Pruning schemes, schedules and the sparsifier that applies them, on ``torch.ao.pruning``.

A :class:`Sparsifier` is a :class:`torch.ao.pruning.BaseSparsifier`: ``prepare(model, config)``
registers a :class:`Mask` (torch's ``FakeSparsity``) on every tensor named in the config
(``[{"tensor_fqn": "convs.2.weight"}, ...]``; any ``nn.Module``, by default sentei's convs);
``step()`` asks the scheme for new masks at each tensor's ``sparsity_level`` (``update_mask``)
and checks the scheme's invariant; ``squash_mask()`` makes the masks permanent. A
:class:`SparsityScheduler` (torch's ``LambdaSL``) sets the levels over the pruning epochs from
a :class:`Cubic` (Zhu & Gupta, torch's ``CubicSL`` formula) or :class:`OneShot` schedule. A
scheme only says how a mask is chosen and what it guarantees:

``filterwise`` (SENTEI)
    every output filter keeps exactly ``K = floor((1 - s) * Cin*k*k)`` weights, the
    largest magnitudes within that filter: the same K for every filter of a layer.
``groupwise`` (after Kang, accelerator-aware pruning)
    every filter is cut into groups of ``G`` weights and every group keeps the same number
    ``floor((1 - s) * G)`` (at least 1) of its largest weights. The groups follow
    ``layout``: ``channels`` is Kang's -- ``G`` consecutive input channels at one kernel
    position, the weights of the activations an engine fetches together (``G`` divides
    ``Cin``); ``flat`` (the default, and what the shipped configs' G = 144 ran) takes ``G``
    consecutive weights of the flattened filter in model-file order ``(ci, ky, kx)``: with
    ``G`` a multiple of ``k*k`` these are blocks of whole channels, a finer-grained
    filter-wise balance rather than Kang's layout (sentei's engine reads one stored weight
    per lane per clock and fetches no groups).
``unstructured``
    magnitude pruning that ignores the hardware. ``ranking`` ``global`` (the default): one
    threshold over all pruned layers, so the layers end up at unequal sparsities (a nonzero
    per-layer override is not honoured per layer, only layers kept dense are left out);
    ``layer``: each layer's own threshold at its own target, the control that changes only
    the balance within layers against filter-wise pruning. Either way filters end up at
    unequal counts, and the model file pads them to the largest count.
``nm``
    N:M: in every run of ``M`` consecutive input channels at each kernel tap, ``N`` weights
    are kept (2:4 is the 50 % point; the layout of NVIDIA's ASP for convolutions). A gradual
    schedule can only step the kept count (4, 3, 2 of 4), not ramp it.
``pattern`` (after Niu et al., PCONV)
    pattern pruning plus connectivity pruning, filter-wise balanced: a library of ``patterns``
    kernel patterns of ``pattern_size`` entries is learned from the teacher's kernels (the most
    frequent sets of each kernel's largest magnitudes); every kept kernel keeps the entries of
    its best pattern (the most energy kept), and every filter keeps the same number
    ``n = floor(K / pattern_size)`` of kernels (the most energy), so every filter has exactly
    ``n * pattern_size`` nonzeros.
``smallworld`` (after Krishnan et al., structural small-world pruning)
    a connectivity fixed before training: output filters and input channels fall into
    ``clusters`` groups; each filter ranks the input channels of its own group first (a local
    cluster, shared by the group's filters: a grouped convolution for the dataflow), the rest
    by ring distance, and each rank is rewired with probability ``rewire`` to a random channel
    of another group (a long link), seeded. Every filter keeps its first
    ``n = floor(K / (k*k))`` channels' whole kernels: the same K in every filter, whatever the
    weights.

The last two keep per layer what their masks follow besides the weights (the pattern library,
the channel ranking: :meth:`Scheme.state`) as buffers of the layer's :class:`Mask`, saved with
the masks in the model's state dict.
"""
from __future__ import annotations

import abc
import itertools
import math
import re
import warnings
import zlib

import torch
import torch.nn as nn
from torch.ao.pruning import BaseSparsifier, FakeSparsity
from torch.ao.pruning.scheduler.cubic_scheduler import CubicSL
from torch.ao.pruning.scheduler.lambda_scheduler import LambdaSL
from torch.ao.pruning.sparsifier.utils import module_to_fqn
from torch.nn.utils import parametrize

from sentei.errors import SenteiError
from sentei.training.pruning_names import GROUP_LAYOUTS, RANKINGS


class Mask(FakeSparsity):
    """torch's :class:`~torch.ao.pruning.FakeSparsity` (``w -> mask * w``, the mask a buffer), saved
    with the model.

    FakeSparsity's ``state_dict`` returns nothing, so torch keeps masks only in the sparsifier's
    state. sentei's checkpoints hold them in the model's state dict
    (``...parametrizations.weight.0.mask``), so this one keeps :class:`nn.Module`'s ``state_dict``:
    existing checkpoints load and a checkpoint alone rebuilds the pruned network.
    """

    state_dict = nn.Module.state_dict


def _keep_topk(scores: torch.Tensor, k: int) -> torch.Tensor:
    """0/1 mask keeping the ``k`` largest entries of each row of ``scores`` (ties: lowest index)."""
    rows, n = scores.shape
    mask = torch.zeros_like(scores)
    if k <= 0:
        return mask
    if k >= n:
        return torch.ones_like(scores)
    # stable ordering: sort by (-score, index) so equal magnitudes keep the lower index
    order = torch.sort(-scores, dim=1, stable=True).indices[:, :k]
    mask.scatter_(1, order, 1.0)
    return mask


class Scheme(abc.ABC):
    """How masks are chosen, and the invariant they keep. Subclasses set ``name``."""

    name = "scheme"
    global_ranking = False

    @abc.abstractmethod
    def mask(self, weight: torch.Tensor, sparsity: float) -> torch.Tensor:
        """0/1 mask of ``weight`` ``[Cout, Cin, k, k]`` at ``sparsity``."""

    @abc.abstractmethod
    def check(self, mask: torch.Tensor, sparsity: float, layer: str) -> None:
        """Raise :class:`SenteiError` naming ``layer`` if ``mask`` breaks the invariant."""

    def state(self, weight: torch.Tensor, layer: str) -> dict[str, torch.Tensor]:
        """What a layer's masks follow besides its weights, made once from the weights the sparsifier
        is prepared on (the teacher's) and kept as buffers of the layer's :class:`Mask`; ``mask`` and
        ``check`` then take them as keywords. None for the magnitude schemes."""
        return {}


def filter_k(fan_in: int, sparsity: float) -> int:
    """K kept per filter at ``sparsity``: at most ``(1 - sparsity)`` of the filter, at least one weight."""
    return max(1, min(fan_in, int(math.floor((1.0 - sparsity) * fan_in + 1e-9))))


class FilterWise(Scheme):
    """SENTEI: the same number K of nonzeros in every output filter (largest magnitudes)."""

    name = "filterwise"

    def mask(self, weight, sparsity):
        flat = weight.detach().abs().reshape(weight.shape[0], -1)
        return _keep_topk(flat, filter_k(flat.shape[1], sparsity)).reshape(weight.shape)

    def check(self, mask, sparsity, layer):
        flat = mask.reshape(mask.shape[0], -1)
        k = filter_k(flat.shape[1], sparsity)
        counts = flat.sum(dim=1)
        if not bool((counts == k).all()):
            raise SenteiError(f"layer {layer}: filter-wise invariant broken: nonzeros per filter "
                              f"{int(counts.min())}..{int(counts.max())}, expected exactly K = {k}")


class GroupWise(Scheme):
    """Kang: the same number of nonzeros in every group of ``group_size`` weights.

    ``layout``: ``channels`` -- ``G`` consecutive input channels at one kernel position
    (Kang's); ``flat`` -- ``G`` consecutive weights of the flattened filter ``(ci, ky, kx)``.
    """

    name = "groupwise"

    def __init__(self, group_size: int = 8, layout: str = "flat"):
        if group_size < 1:
            raise SenteiError(f"groupwise: group size {group_size} must be at least 1")
        if layout not in GROUP_LAYOUTS:
            raise SenteiError(f"groupwise: group layout {layout!r}: use {' or '.join(GROUP_LAYOUTS)}")
        self.group_size, self.layout = int(group_size), layout

    def _groups(self, t: torch.Tensor) -> torch.Tensor:
        if self.layout == "channels":
            if t.shape[1] % self.group_size:
                raise SenteiError(f"groupwise: {t.shape[1]} input channels are not a multiple of the group size "
                                  f"{self.group_size}; pick G dividing Cin with group layout channels (or keep "
                                  f"the layer dense)")
            return t.permute(0, 2, 3, 1).reshape(-1, self.group_size)  # (co, ky, kx, ci): channels at a tap
        flat = t.reshape(t.shape[0], -1)
        if flat.shape[1] % self.group_size:
            raise SenteiError(f"groupwise: filter size {flat.shape[1]} is not a multiple of the group size "
                              f"{self.group_size}; pick G dividing Cin*k*k (or keep the layer dense)")
        return flat.reshape(-1, self.group_size)

    def _ungroup(self, g: torch.Tensor, shape) -> torch.Tensor:
        if self.layout == "channels":
            cout, cin, kh, kw = shape
            return g.reshape(cout, kh, kw, cin).permute(0, 3, 1, 2).contiguous()
        return g.reshape(shape)

    def kept(self, sparsity: float) -> int:
        return filter_k(self.group_size, sparsity)

    def mask(self, weight, sparsity):
        groups = self._groups(weight.detach().abs())
        return self._ungroup(_keep_topk(groups, self.kept(sparsity)), weight.shape)

    def check(self, mask, sparsity, layer):
        counts = self._groups(mask).sum(dim=1)
        n = self.kept(sparsity)
        if not bool((counts == n).all()):
            raise SenteiError(f"layer {layer}: group-wise invariant broken: nonzeros per group of "
                              f"{self.group_size} ({self.layout}) range {int(counts.min())}..{int(counts.max())}, expected {n}")


class NM(Scheme):
    """N:M sparsity over input channels at every kernel tap (e.g. 2:4)."""

    name = "nm"

    def __init__(self, n: int = 2, m: int = 4):
        if not 1 <= n <= m:
            raise SenteiError(f"nm: need 1 <= N <= M, got {n}:{m}")
        self.n, self.m = int(n), int(m)

    def _groups(self, t: torch.Tensor) -> torch.Tensor:
        cout, cin, kh, kw = t.shape
        if cin % self.m:
            raise SenteiError(f"nm: {cin} input channels are not a multiple of M = {self.m}; "
                              f"keep that layer dense (per-layer override)")
        return t.permute(0, 2, 3, 1).reshape(-1, self.m)

    def _ungroup(self, g: torch.Tensor, shape) -> torch.Tensor:
        cout, cin, kh, kw = shape
        return g.reshape(cout, kh, kw, cin).permute(0, 3, 1, 2).contiguous()

    def kept(self, sparsity: float) -> int:
        """Weights kept per group: N at the full N:M point, more while a schedule ramps up."""
        return max(self.n, self.m - int(math.floor(sparsity * self.m + 1e-9)))

    def mask(self, weight, sparsity):
        return self._ungroup(_keep_topk(self._groups(weight.detach().abs()), self.kept(sparsity)), weight.shape)

    def check(self, mask, sparsity, layer):
        counts = self._groups(mask).sum(dim=1)
        if not bool((counts == self.kept(sparsity)).all()):
            raise SenteiError(f"layer {layer}: {self.n}:{self.m} invariant broken: nonzeros per group "
                              f"{int(counts.min())}..{int(counts.max())}")


class Unstructured(Scheme):
    """Magnitude pruning: one threshold over every pruned layer (``ranking`` global), or one
    per layer at its own target (``layer``)."""

    name = "unstructured"

    def __init__(self, ranking: str = "global"):
        if ranking not in RANKINGS:
            raise SenteiError(f"unstructured: ranking {ranking!r}: use {' or '.join(RANKINGS)}")
        self.ranking = ranking
        self.global_ranking = ranking == "global"

    def global_masks(self, weights: list[torch.Tensor], sparsities: list[float]) -> list[torch.Tensor]:
        """Masks of all layers at once: the smallest ``sum(s_i * n_i)`` magnitudes go."""
        scores = torch.cat([w.detach().abs().reshape(-1) for w in weights])
        total = sum(int(round(s * w.numel())) for w, s in zip(weights, sparsities))
        keep = torch.ones_like(scores)
        if total > 0:
            order = torch.sort(scores, stable=True).indices[:total]
            keep[order] = 0.0
        masks, pos = [], 0
        for w in weights:
            masks.append(keep[pos:pos + w.numel()].reshape(w.shape))
            pos += w.numel()
        return masks

    def mask(self, weight, sparsity):
        return self.global_masks([weight], [sparsity])[0]

    def check(self, mask, sparsity, layer):
        if mask.sum() < 1:
            raise SenteiError(f"layer {layer}: {self.ranking} pruning removed every weight; lower the sparsity")
        if not self.global_ranking:
            zeros, want = int(mask.numel() - mask.sum()), int(round(sparsity * mask.numel()))
            if zeros != want:
                raise SenteiError(f"layer {layer}: per-layer invariant broken: {zeros} weights pruned, expected "
                                  f"{want} ({100 * sparsity:.1f} % of {mask.numel()})")


def _kernels_kept(cin: int, kk: int, per_kernel: int, sparsity: float) -> int:
    """Whole kernels kept per filter when each keeps ``per_kernel`` weights: ``floor(K / per_kernel)``
    of the filter-wise K at ``sparsity``, at least one, at most ``cin``."""
    return max(1, min(cin, filter_k(cin * kk, sparsity) // per_kernel))


def _balance_error(layer: str, what: str, counts: torch.Tensor, want: int) -> SenteiError:
    return SenteiError(f"layer {layer}: {what} invariant broken: nonzeros per filter {int(counts.min())}.."
                       f"{int(counts.max())}, expected exactly K = {want}")


class Pattern(Scheme):
    """PCONV (Niu et al.): pattern pruning with a library learned from the teacher's kernels, plus
    connectivity pruning with the same number of kernels kept in every filter (filter-wise balanced).

    ``patterns``: the library's size; ``pattern_size``: the entries each pattern keeps (of ``k*k``;
    a 1x1 kernel's only pattern is itself: connectivity pruning alone). At sparsity 0 nothing is
    pruned; above it every kernel keeps a pattern at once (``pattern_size / (k*k)`` of the filter)
    and a schedule ramps the kernels removed.
    """

    name = "pattern"

    def __init__(self, patterns: int = 8, pattern_size: int = 4):
        if not 1 <= pattern_size <= 9:
            raise SenteiError(f"pattern: pattern size {pattern_size} must lie in 1..9 (entries of a 3x3 kernel)")
        most = math.comb(9, pattern_size)
        if not 1 <= patterns <= most:
            raise SenteiError(f"pattern: a library of {patterns} patterns of {pattern_size} entries: a 3x3 kernel "
                              f"has {most} such patterns; pick 1..{most}")
        self.patterns, self.pattern_size = int(patterns), int(pattern_size)

    def sizes(self, kk: int) -> tuple[int, int]:
        """(entries per pattern, library size) for kernels of ``kk`` taps."""
        size = min(self.pattern_size, kk)
        return size, min(self.patterns, math.comb(kk, size))

    def state(self, weight, layer):
        return {"patterns": self.library(weight)}

    def library(self, weight: torch.Tensor) -> torch.Tensor:
        """uint8 ``[L, k*k]``: the ``L`` candidate patterns most often the set of a kernel's
        ``pattern_size`` largest magnitudes (ties: the most energy kept over all kernels, then the
        lowest taps), the order of preference."""
        kk = weight.shape[2] * weight.shape[3]
        size, count = self.sizes(kk)
        cands = torch.zeros(math.comb(kk, size), kk)
        for row, taps in enumerate(itertools.combinations(range(kk), size)):
            cands[row, list(taps)] = 1.0
        if weight.device.type == "meta":  # a network built only for its shapes (checkpoint checks)
            return cands[:count].to(device=weight.device, dtype=torch.uint8)
        mags = weight.detach().float().abs().reshape(-1, kk).cpu()
        weights_of_taps = 2 ** torch.arange(kk, dtype=torch.int64)
        codes = _keep_topk(mags, size).to(torch.int64) @ weights_of_taps
        freq = (codes[:, None] == (cands.to(torch.int64) @ weights_of_taps)[None, :]).sum(0)
        energy = (mags ** 2 @ cands.T).sum(0)
        order = torch.sort(-energy, stable=True).indices  # then by frequency, stable: (freq, energy, taps)
        order = order[torch.sort(-freq[order], stable=True).indices]
        return cands[order[:count]].to(device=weight.device, dtype=torch.uint8)

    def _library_of(self, patterns: torch.Tensor | None, weight: torch.Tensor) -> torch.Tensor:
        kk = weight.shape[2] * weight.shape[3]
        size, count = self.sizes(kk)
        if patterns is None:
            patterns = self.library(weight)
        lib = patterns.detach().to(weight.device, torch.float32)
        if tuple(lib.shape) != (count, kk) or not bool(((lib == 0) | (lib == 1)).all()) \
                or not bool((lib.sum(1) == size).all()) or len(torch.unique(lib, dim=0)) != count:
            raise SenteiError(f"pattern: the library {list(lib.shape)} is not {count} distinct patterns of {size} "
                              f"of {kk} taps")
        return lib

    def mask(self, weight, sparsity, patterns=None):
        if sparsity <= 0.0 or weight.device.type == "meta":  # (meta: a network built for its shapes)
            return torch.ones_like(weight)
        cout, cin, kh, kw = weight.shape
        lib = self._library_of(patterns, weight)
        energy = weight.detach().float().reshape(-1, kh * kw) ** 2 @ lib.T  # [kernels, L]: energy each pattern keeps
        kept, best = torch.max(energy, dim=1)  # ties: the first, the most frequent pattern
        kernels = _keep_topk(kept.reshape(cout, cin), _kernels_kept(cin, kh * kw, self.sizes(kh * kw)[0], sparsity))
        return (kernels[..., None] * lib[best].reshape(cout, cin, kh * kw)).reshape(weight.shape).to(weight.dtype)

    def check(self, mask, sparsity, layer, patterns=None):
        cout, cin, kh, kw = mask.shape
        flat = mask.reshape(cout, -1)
        if sparsity <= 0.0:
            if not bool((flat != 0).all()):
                raise _balance_error(layer, "pattern", (flat != 0).sum(1), flat.shape[1])
            return
        size = self.sizes(kh * kw)[0]
        n = _kernels_kept(cin, kh * kw, size, sparsity)
        counts = (flat != 0).sum(1)
        if not bool((counts == n * size).all()):
            raise _balance_error(layer, "pattern", counts, n * size)
        taps = (mask.reshape(cout, cin, kh * kw) != 0).float()
        per_filter = (taps.sum(2) > 0).sum(1)
        if not bool((per_filter == n).all()):
            raise SenteiError(f"layer {layer}: pattern invariant broken: kernels kept per filter "
                              f"{int(per_filter.min())}..{int(per_filter.max())}, expected {n} in every filter")
        if patterns is not None:
            lib = patterns.detach().to(taps.device, torch.float32)
            kept = taps.reshape(-1, kh * kw)
            kept = kept[kept.sum(1) > 0]
            inside = (kept[:, None, :] == lib[None, :, :]).all(2).any(1)
            if not bool(inside.all()):
                raise SenteiError(f"layer {layer}: pattern invariant broken: {int((~inside).sum())} kept kernels "
                                  f"are not a pattern of the layer's library of {lib.shape[0]}")


class SmallWorld(Scheme):
    """Krishnan et al.'s structural small-world pruning, filter-wise balanced: a channel ranking per
    filter fixed before training (local clusters, a few long links), whose first ``n`` channels
    keep their whole kernels in every filter.

    ``clusters``: groups of output filters and input channels (a group's filters share their local
    channels); ``rewire``: the probability that a rank is a long link (Watts-Strogatz's ``p``);
    ``seed``: with the layer's name, the draws.
    """

    name = "smallworld"

    def __init__(self, clusters: int = 8, rewire: float = 0.1, seed: int = 0):
        if clusters < 1:
            raise SenteiError(f"smallworld: {clusters} clusters: at least 1")
        if not 0.0 <= rewire <= 1.0:
            raise SenteiError(f"smallworld: rewiring probability {rewire} must lie in [0, 1]")
        self.clusters, self.rewire, self.seed = int(clusters), float(rewire), int(seed)

    def groups(self, cout: int, cin: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The cluster of every output filter and of every input channel."""
        c = max(1, min(self.clusters, cin, cout))
        return torch.arange(cout) * c // cout, torch.arange(cin) * c // cin

    def state(self, weight, layer):
        return {"order": self.ranking(weight.shape[0], weight.shape[1], layer, weight.device)}

    def ranking(self, cout: int, cin: int, layer: str, device=None) -> torch.Tensor:
        """int64 ``[Cout, Cin]``: each filter's input channels, the first kept first."""
        if torch.device(device or "cpu").type == "meta":
            return torch.empty(cout, cin, dtype=torch.int64, device=device)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + zlib.crc32(layer.encode("utf-8")))
        rewired = (torch.rand(cout, cin, generator=gen) < self.rewire).tolist()
        draws = torch.rand(cout, cin, generator=gen).tolist()
        out_group, in_group = self.groups(cout, cin)
        c = max(1, min(self.clusters, cin, cout))
        order = torch.empty(cout, cin, dtype=torch.int64)
        for o in range(cout):
            g = int(out_group[o])
            centre = (g + 0.5) * cin / c

            def distance(ci):  # on the ring of channels, from the centre of the filter's group
                d = abs(ci + 0.5 - centre)
                return min(d, cin - d)

            local = sorted(range(cin), key=lambda ci: (int(in_group[ci]) != g, distance(ci), ci))
            far = [ci for ci in range(cin) if int(in_group[ci]) != g]
            taken, row, nxt = set(), [], 0
            for r in range(cin):
                free_far = [ci for ci in far if ci not in taken] if rewired[o][r] else []
                if free_far:
                    pick = free_far[int(draws[o][r] * len(free_far))]
                else:
                    while local[nxt] in taken:
                        nxt += 1
                    pick = local[nxt]
                taken.add(pick)
                row.append(pick)
            order[o] = torch.tensor(row)
        return order.to(device) if device is not None else order

    def _order_of(self, order: torch.Tensor | None, weight: torch.Tensor, layer: str = "layer") -> torch.Tensor:
        cout, cin = weight.shape[:2]
        if order is None:
            order = self.ranking(cout, cin, layer)
        order = order.detach().to(weight.device, torch.int64)
        if tuple(order.shape) != (cout, cin) or not torch.equal(
                order.sort(1).values, torch.arange(cin, device=order.device).expand(cout, cin)):
            raise SenteiError(f"smallworld: the channel ranking {list(order.shape)} is not a ranking of the "
                              f"{cin} input channels for each of {cout} filters")
        return order

    def kept_mask(self, order: torch.Tensor, shape, sparsity: float) -> torch.Tensor:
        cout, cin, kh, kw = shape
        kernels = torch.zeros(cout, cin, device=order.device)
        kernels.scatter_(1, order[:, :_kernels_kept(cin, kh * kw, kh * kw, sparsity)], 1.0)
        return kernels[:, :, None, None].expand(cout, cin, kh, kw)

    def mask(self, weight, sparsity, order=None):
        if sparsity <= 0.0 or weight.device.type == "meta":  # (meta: a network built for its shapes)
            return torch.ones_like(weight)
        return self.kept_mask(self._order_of(order, weight), weight.shape, sparsity).to(weight.dtype).contiguous()

    def check(self, mask, sparsity, layer, order=None):
        cout, cin, kh, kw = mask.shape
        flat = mask.reshape(cout, -1) != 0
        want = flat.shape[1] if sparsity <= 0.0 else _kernels_kept(cin, kh * kw, kh * kw, sparsity) * kh * kw
        counts = flat.sum(1)
        if not bool((counts == want).all()):
            raise _balance_error(layer, "small-world", counts, want)
        if order is not None and sparsity > 0.0:
            fixed = self.kept_mask(self._order_of(order, mask), mask.shape, sparsity).to(mask.device) != 0
            if not torch.equal(fixed, mask != 0):
                raise SenteiError(f"layer {layer}: small-world invariant broken: the mask is not the layer's fixed "
                                  f"connectivity")


def make_scheme(name: str, group_size: int = 8, n: int = 2, m: int = 4, group_layout: str = "flat",
                ranking: str = "global", patterns: int = 8, pattern_size: int = 4, clusters: int = 8,
                rewire: float = 0.1, seed: int = 0) -> Scheme:
    """A scheme by name: ``filterwise``, ``groupwise``, ``unstructured``, ``nm``, ``pattern``, ``smallworld``."""
    if name == "filterwise":
        return FilterWise()
    if name == "groupwise":
        return GroupWise(group_size, group_layout)
    if name == "unstructured":
        return Unstructured(ranking)
    if name == "nm":
        return NM(n, m)
    if name == "pattern":
        return Pattern(patterns, pattern_size)
    if name == "smallworld":
        return SmallWorld(clusters, rewire, seed)
    raise SenteiError(f"unknown pruning scheme {name!r}: use filterwise, groupwise, unstructured, nm, pattern or "
                      f"smallworld")


class OneShot:
    """Full sparsity from ``start`` (a fraction of the pruning epochs) on.

    torch has no one-shot scheduler; :class:`SparsityScheduler` (torch's ``LambdaSL``) runs it.
    No defaults: the config schema holds them (sentei.training.config.Schedule).
    """

    def __init__(self, start: float):
        self.start = float(start)

    def __call__(self, target: float, progress: float) -> float:
        return target if progress >= self.start else 0.0


class Cubic:
    """Zhu & Gupta's gradual schedule: ``s_t = s_f + (s_i - s_f) (1 - (t - t0)/(t1 - t0))^3``.

    The value is torch's :meth:`CubicSL.sparsity_compute_fn
    <torch.ao.pruning.scheduler.cubic_scheduler.CubicSL.sparsity_compute_fn>` (``initially_zero``:
    0 before ``start``; clamped to the target after ``end``), with time as the fraction of the
    pruning phase: ``t0 = start``, ``n * dt = end - start``. (Its clamp also holds a target below
    ``initial`` at ``initial``; sentei only asks for targets of 1.0, the fraction of each layer's.)
    No defaults: the config schema holds them (sentei.training.config.Schedule).
    """

    def __init__(self, start: float, end: float, initial: float):
        if not 0 <= start < end <= 1:
            raise SenteiError(f"cubic schedule: need 0 <= start < end <= 1, got {start}, {end}")
        self.start, self.end, self.initial = float(start), float(end), float(initial)

    def __call__(self, target: float, progress: float) -> float:
        return float(CubicSL.sparsity_compute_fn(s_0=self.initial, s_f=target, t=progress, t_0=self.start,
                                                 dt=self.end - self.start, n=1, initially_zero=True))


def make_schedule(cfg: dict):
    """A full schedule section (sentei.training.config.fill gives one) -> schedule:
    ``{"type": "cubic", "start": 0.0, "end": 0.6, "initial": 0.0}`` or ``{"type": "oneshot", "start": 0.0}``."""
    cfg = dict(cfg)
    kind = cfg.pop("type")
    if kind == "cubic":
        return Cubic(**cfg)
    if kind == "oneshot":
        if set(cfg) - {"start"}:
            raise SenteiError(f"a oneshot schedule takes only start, not {', '.join(sorted(set(cfg) - {'start'}))}; "
                              f"drop it")
        return OneShot(**cfg)
    raise SenteiError(f"unknown pruning schedule {kind!r}: use cubic or oneshot")


class Sparsifier(BaseSparsifier):
    """A :class:`torch.ao.pruning.BaseSparsifier` whose masks a :class:`Scheme` chooses.

    Any ``nn.Module``: ``prepare(model, config)`` takes torch's config, a list of
    ``{"tensor_fqn": "convs.2.weight", "sparsity_level": 0.9, "name": "conv3"}`` (the level and
    the name optional: the run's ``sparsity``, and the module's path, with ``overrides`` by name).
    Without a config it prunes sentei's convs (``model.convs()``, named ``conv1`` ...) or, on
    another module, the weight of every ``nn.Conv2d``; a layer whose level is 0 stays dense.

    Parameters
    ----------
    scheme : Scheme
    sparsity : float
        Target fraction of zero weights in every pruned layer (torch's default ``sparsity_level``).
    overrides : dict
        Per-layer target ``{"conv1": 0.0}``; 0 keeps a layer dense (not pruned at all).

    Where it differs from torch's lifecycle, and why:

    - Masks are :class:`Mask` parametrizations, torch's ``FakeSparsity`` saved with the model
      (sentei's checkpoints carry the masks in the model's state dict).
    - Every group keeps its final level as ``target``; ``sparsity_level`` is the level of the next
      mask update (what torch's schedulers set). ``step(fraction)`` sets every level to
      ``target * fraction`` first, sentei's training loop's shorthand (the product it always
      computed, so the masks are the same bit for bit); ``step()`` is torch's.
    - ``step`` checks the scheme's invariant on every new mask (exactly K nonzeros per filter for
      filter-wise) and zeroes the pruned weights; a global ranking (unstructured) ranks all groups
      at once, so ``step`` computes it rather than one ``update_mask`` per group.
    - ``squash_mask`` also forgets the groups: nothing is left to mask, and ``step``/``check`` after
      it do nothing instead of failing on a removed parametrization.
    """

    def __init__(self, scheme: Scheme, sparsity: float, overrides: dict | None = None):
        if not 0.0 <= sparsity < 1.0:
            raise SenteiError(f"sparsity {sparsity} must lie in [0, 1)")
        super().__init__(defaults={"sparsity_level": float(sparsity)})
        self.scheme, self.sparsity = scheme, float(sparsity)
        self.overrides = {str(k): float(v) for k, v in (overrides or {}).items()}
        if getattr(scheme, "global_ranking", False):
            odd = {k: v for k, v in self.overrides.items() if v not in (0.0, self.sparsity)}
            if odd:
                name, value = next(iter(odd.items()))
                raise SenteiError(f"{scheme.name}: a per-layer sparsity ({name}: {value:g}) has no meaning under one "
                                  f"global threshold; keep a layer dense (0) or drop the override")
        self.fraction: float | None = 1.0  # the levels as a fraction of the targets (None: set otherwise)
        self._current: float | None = 0.0  # the masks' (all ones until the first step)

    def __getstate__(self) -> dict:
        """All of it (torch's keeps defaults, state and groups only): copying a network copies the
        sparsifier attached to it whole, scheme and masks' fraction included, as sentei's always
        did. A scheduler's counting wrapper of ``step`` stays with the original."""
        return {k: v for k, v in self.__dict__.items() if k != "step"}

    def target(self, name: str) -> float:
        return self.overrides.get(name, self.sparsity)

    def default_config(self, model: nn.Module) -> list[dict]:
        """sentei's convs (``model.convs()``) or every ``nn.Conv2d``, at their targets, named."""
        if hasattr(model, "convs"):
            named = list(model.convs())
        else:
            named = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        return [{"tensor_fqn": f"{module_to_fqn(model, m)}.weight", "name": n, "sparsity_level": self.target(n)}
                for n, m in named]

    def prepare(self, model: nn.Module, config: list[dict] | None = None) -> "Sparsifier":
        """Register a :class:`Mask` on every tensor of ``config`` whose level is above 0."""
        if config is None:
            config = self.default_config(model)
        names = [entry.get("name", entry["tensor_fqn"].rsplit(".", 1)[0]) for entry in config]
        unknown = set(self.overrides) - set(names)
        if unknown:
            raise SenteiError(f"sparsity override for unknown layer(s) {sorted(unknown)}; layers are {names}")
        kept, self._states = [], {}
        for entry in config:
            entry = dict(entry)
            name = entry.setdefault("name", entry["tensor_fqn"].rsplit(".", 1)[0])
            level = float(entry.setdefault("sparsity_level", self.target(name)))
            if level <= 0.0:
                continue
            module_fqn, _, tensor_name = entry["tensor_fqn"].rpartition(".")
            try:
                tensor = getattr(model.get_submodule(module_fqn), tensor_name)
            except AttributeError:
                raise SenteiError(f"layer {name}: the model has no tensor {entry['tensor_fqn']!r}") from None
            try:  # a layer the scheme cannot group (G or M not dividing it) is refused before any epoch
                self._states[entry["tensor_fqn"]] = state = self.scheme.state(tensor.detach(), name)
                self.scheme.mask(tensor.detach(), level, **state)
            except SenteiError as exc:
                raise SenteiError(f"layer {name}: {exc}") from None
            kept.append(dict(entry, target=level))
        super().prepare(model, kept)
        del self._states
        return self

    def _prepare(self, *args, **kwargs):
        """torch's ``_prepare`` with :class:`Mask` (and the scheme's state of the layer as its buffers);
        a tensor already masked keeps its mask."""
        for config in self.groups:
            module, tensor_name = config["module"], config["tensor_name"]
            if self._parametrization(module, tensor_name) is None:
                mask = Mask(torch.ones_like(getattr(module, tensor_name)))
                for key, value in getattr(self, "_states", {}).get(config["tensor_fqn"], {}).items():
                    mask.register_buffer(key, value)
                parametrize.register_parametrization(module, tensor_name, mask)
            self.state[config["tensor_fqn"]]["sparsity_level"] = config["target"] * (self._current or 0.0)

    @staticmethod
    def _parametrization(module, tensor_name):
        if not parametrize.is_parametrized(module, tensor_name):
            return None
        return next((p for p in module.parametrizations[tensor_name] if isinstance(p, FakeSparsity)), None)

    @property
    def layers(self) -> list[tuple[str, nn.Module]]:
        """``(name, module)`` of every pruned tensor."""
        return [(g["name"], g["module"]) for g in self.groups]

    @property
    def current(self) -> float | None:
        """The fraction of each target the masks are at (None when something else set the levels).

        Setting it (resuming from a checkpoint that records it) says so without new masks."""
        return self._current

    @current.setter
    def current(self, fraction: float) -> None:
        self._set_fraction(fraction)
        for g in self.groups:
            self.state[g["tensor_fqn"]]["sparsity_level"] = g["sparsity_level"]
        self._current = self.fraction

    def _set_fraction(self, fraction: float) -> None:
        self.fraction = float(fraction)
        for g in self.groups:
            g["sparsity_level"] = g["target"] * self.fraction

    @staticmethod
    def _raw(module, tensor_name="weight") -> torch.Tensor:
        return module.parametrizations[tensor_name].original

    @staticmethod
    def _mask_buffer(module, tensor_name="weight") -> torch.Tensor:
        return Sparsifier._parametrization(module, tensor_name).mask

    def scheme_state(self, module, tensor_name="weight") -> dict[str, torch.Tensor]:
        """The scheme's state of a layer (:meth:`Scheme.state`), from its :class:`Mask`'s buffers."""
        mask = self._parametrization(module, tensor_name)
        return {key: value for key, value in mask.named_buffers(recurse=False) if key != "mask"}

    def _set_mask(self, config: dict, mask: torch.Tensor) -> None:
        module, tensor_name, level = config["module"], config["tensor_name"], config["sparsity_level"]
        self.scheme.check(mask, level, config["name"], **self.scheme_state(module, tensor_name))
        buffer = self._mask_buffer(module, tensor_name)
        buffer.copy_(mask.to(buffer.dtype))
        # pruned weights are zeroed; they get no gradient while masked, but AdamW's momentum
        # still moves them a little, so one that a later mask update brings back starts
        # from that small value, not exactly from zero
        self._raw(module, tensor_name).mul_(mask)
        self.state[config["tensor_fqn"]]["sparsity_level"] = level

    def update_mask(self, module: nn.Module, tensor_name: str, sparsity_level: float, **kwargs) -> None:
        """The scheme's mask of one tensor at ``sparsity_level``, checked, and the pruned weights zeroed."""
        mask = self.scheme.mask(self._raw(module, tensor_name), sparsity_level,
                                **self.scheme_state(module, tensor_name))
        self._set_mask(dict(kwargs, module=module, tensor_name=tensor_name, sparsity_level=sparsity_level), mask)

    def step(self, fraction: float | None = None) -> None:
        """New masks at every group's ``sparsity_level`` (``target * fraction`` when given), checked."""
        if fraction is not None:
            self._set_fraction(fraction)
        if not self.enable_mask_update:
            return
        with torch.no_grad():
            if self.scheme.global_ranking and self.groups:
                masks = self.scheme.global_masks([self._raw(g["module"], g["tensor_name"]) for g in self.groups],
                                                 [g["sparsity_level"] for g in self.groups])
                for config, mask in zip(self.groups, masks):
                    self._set_mask(config, mask)
            else:
                for config in self.groups:
                    self.update_mask(**config)
        as_fraction = self.fraction is not None and all(
            g["sparsity_level"] == g["target"] * self.fraction for g in self.groups)
        self._current = self.fraction if as_fraction else None

    def check(self) -> None:
        """Check the scheme's invariant on the masks as they are now (at the levels they were made at)."""
        for g in self.groups:
            level = self.state[g["tensor_fqn"]]["sparsity_level"]
            self.scheme.check(self._mask_buffer(g["module"], g["tensor_name"]), level, g["name"],
                              **self.scheme_state(g["module"], g["tensor_name"]))

    def squash_mask(self, *args, **kwargs) -> None:
        """torch's ``squash_mask`` (plain weights with their zeros, no parametrization left); the
        groups are forgotten with the masks."""
        super().squash_mask(*args, **kwargs)
        self.groups, self.state = [], type(self.state)(dict)

    def state_dict(self) -> dict:
        """torch's (``state``: each tensor's mask and level; ``groups``), the masks as they are now
        (moving the model replaces the buffers), and ``current``."""
        for g in self.groups:
            self.state[g["tensor_fqn"]]["mask"] = self._mask_buffer(g["module"], g["tensor_name"])
        return dict(super().state_dict(), current=self._current, fraction=self.fraction)

    def load_state_dict(self, state_dict: dict, strict: bool = True) -> None:
        """torch's, on a prepared model, but the masks are copied into the model's buffers (where the
        model is), not put in their place."""
        states = {k: dict(v) for k, v in state_dict["state"].items()}
        masks = {k: v.pop("mask") for k, v in states.items() if v.get("mask") is not None}
        super().load_state_dict({"state": states, "groups": state_dict["groups"]}, strict)
        for g in self.groups:
            if g["tensor_fqn"] in masks:
                buffer = self._mask_buffer(g["module"], g["tensor_name"])
                buffer.copy_(masks[g["tensor_fqn"]])
        self._current, self.fraction = state_dict.get("current"), state_dict.get("fraction")


class SparsityScheduler(LambdaSL):
    """A sentei schedule (:class:`Cubic`, :class:`OneShot`) over ``epochs`` as torch's ``LambdaSL``:
    every group's ``sparsity_level`` becomes its target times ``schedule(1.0, t / epochs)``.

    Where it differs from torch's schedulers, and why:

    - ``step(t)`` takes the time ``t`` in epochs, fractional inside one (as the ``epoch`` argument
      of torch's LR schedulers once did): sentei updates masks every few iterations and its
      schedules are functions of the fraction of the pruning phase, ``(epoch + it / n) / epochs``
      as the training loop computes it, so the levels match its masks bit for bit. ``step()``
      without ``t`` counts whole epochs as torch's do.
    - Levels are a fraction of each target (``LambdaSL``'s ``base_sl * lambda``), not
      ``CubicSL``'s interpolation between two levels: one fraction serves layers with different
      targets, and it is what sentei's checkpoints record (``sparsity_fraction``). The cubic
      itself is ``CubicSL``'s formula (:class:`Cubic`).
    - The base levels are the groups' ``target``\\ s, not their levels at construction, so a
      scheduler built on a resumed sparsifier aims at the same targets.
    - ``step(t)`` does not warn when called before the sparsifier's ``step``: the time is given,
      not counted, so the order cannot shift it.
    """

    def __init__(self, sparsifier: Sparsifier, schedule, epochs: float, last_epoch: int = -1, verbose=False):
        if float(epochs) <= 0:
            raise SenteiError(f"a sparsity schedule over {epochs:g} epochs: it needs at least one")
        self.schedule, self.epochs, self.time = schedule, float(epochs), None
        for g in sparsifier.groups:  # torch takes its base_sl from the levels now: make them the targets
            g["sparsity_level"] = g.get("target", g["sparsity_level"])
        super().__init__(sparsifier, self.fraction_at_epoch, last_epoch, verbose)  # levels at t = 0, no new masks

    def fraction_at(self, t: float) -> float:
        """The fraction of the targets at time ``t`` (epochs)."""
        return self.schedule(1.0, t / self.epochs)

    def fraction_at_epoch(self, last_epoch: int) -> float:
        return self.fraction_at(last_epoch if self.time is None else self.time)

    def step(self, epoch: float | None = None) -> None:
        self.time = epoch
        with warnings.catch_warnings():
            if epoch is not None:
                warnings.filterwarnings("ignore", re.escape("Detected call of `scheduler.step()` before"),
                                        UserWarning)
            super().step()
        self.sparsifier.fraction = self.fraction_at_epoch(self.last_epoch)

    def state_dict(self) -> dict:
        """torch's, less the schedule and the lambdas (rebuilt from the config)."""
        return {k: v for k, v in super().state_dict().items() if k not in ("sl_lambdas", "schedule")}


def nonzeros_per_filter(weight: torch.Tensor) -> torch.Tensor:
    """Nonzero weights in each output filter of ``[Cout, ...]``."""
    return (weight.reshape(weight.shape[0], -1) != 0).sum(dim=1)


def sparsity_of(weight: torch.Tensor) -> float:
    return 1.0 - float((weight != 0).sum()) / weight.numel()


__all__ = ["Mask", "Scheme", "FilterWise", "GroupWise", "NM", "Unstructured", "Pattern", "SmallWorld", "make_scheme",
           "OneShot",
           "Cubic", "make_schedule", "Sparsifier", "SparsityScheduler", "filter_k", "nonzeros_per_filter",
           "sparsity_of"]
