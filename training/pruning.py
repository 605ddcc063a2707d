"""Pruning schemes, schedules and the sparsifier that applies them (torch.ao.pruning's lifecycle).

A :class:`Sparsifier` ``prepare``\\ s a model by registering a :class:`Mask` parametrization
on the weight of every conv it prunes; ``step(sparsity)`` asks the scheme for new masks and
checks the scheme's invariant; ``squash`` makes the masks permanent. A scheme only says
how a mask is chosen and what it guarantees:

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
"""
from __future__ import annotations

import abc


import math

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from sentei.errors import SenteiError
from sentei.training.config import GROUP_LAYOUTS, RANKINGS


class Mask(nn.Module):
    """Weight parametrization ``w -> w * mask``; the mask is a buffer (saved in checkpoints)."""

    def __init__(self, shape):
        super().__init__()
        self.register_buffer("mask", torch.ones(shape))

    def forward(self, w):
        return w * self.mask


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


def make_scheme(name: str, group_size: int = 8, n: int = 2, m: int = 4, group_layout: str = "flat",
                ranking: str = "global") -> Scheme:
    """A scheme by name: ``filterwise``, ``groupwise``, ``unstructured``, ``nm``."""
    if name == "filterwise":
        return FilterWise()
    if name == "groupwise":
        return GroupWise(group_size, group_layout)
    if name == "unstructured":
        return Unstructured(ranking)
    if name == "nm":
        return NM(n, m)
    raise SenteiError(f"unknown pruning scheme {name!r}: use filterwise, groupwise, unstructured or nm")


class OneShot:
    """Full sparsity from ``start`` (a fraction of the pruning epochs) on."""

    def __init__(self, start: float = 0.0):
        self.start = float(start)

    def __call__(self, target: float, progress: float) -> float:
        return target if progress >= self.start else 0.0


class Cubic:
    """Zhu & Gupta's gradual schedule: ``s_t = s_f + (s_i - s_f) (1 - (t - t0)/(t1 - t0))^3``."""

    def __init__(self, start: float = 0.0, end: float = 0.5, initial: float = 0.0):
        if not 0 <= start < end <= 1:
            raise SenteiError(f"cubic schedule: need 0 <= start < end <= 1, got {start}, {end}")
        self.start, self.end, self.initial = float(start), float(end), float(initial)

    def __call__(self, target: float, progress: float) -> float:
        if progress < self.start:
            return 0.0
        t = min(1.0, (progress - self.start) / (self.end - self.start))
        return target + (self.initial - target) * (1.0 - t) ** 3


def make_schedule(cfg: dict | None):
    """``{"type": "cubic", "start": 0, "end": 0.5}`` or ``{"type": "oneshot"}`` -> schedule."""
    cfg = dict(cfg or {"type": "cubic"})
    kind = cfg.pop("type", "cubic")
    if kind == "cubic":
        return Cubic(**cfg)
    if kind == "oneshot":
        if set(cfg) - {"start"}:
            raise SenteiError(f"a oneshot schedule takes only start, not {', '.join(sorted(set(cfg) - {'start'}))}; "
                              f"drop it")
        return OneShot(**cfg)
    raise SenteiError(f"unknown pruning schedule {kind!r}: use cubic or oneshot")


class Sparsifier:
    """Masks on the convs of an :class:`~sentei.training.models.FCN`, chosen by a scheme.

    Parameters
    ----------
    scheme : Scheme
    sparsity : float
        Target fraction of zero weights in every pruned layer.
    overrides : dict
        Per-layer target ``{"conv1": 0.0}``; 0 keeps a layer dense (not pruned at all).
    """

    def __init__(self, scheme: Scheme, sparsity: float, overrides: dict | None = None):
        if not 0.0 <= sparsity < 1.0:
            raise SenteiError(f"sparsity {sparsity} must lie in [0, 1)")
        self.scheme, self.sparsity = scheme, float(sparsity)
        self.overrides = {str(k): float(v) for k, v in (overrides or {}).items()}
        if getattr(scheme, "global_ranking", False):
            odd = {k: v for k, v in self.overrides.items() if v not in (0.0, self.sparsity)}
            if odd:
                name, value = next(iter(odd.items()))
                raise SenteiError(f"{scheme.name}: a per-layer sparsity ({name}: {value:g}) has no meaning under one "
                                  f"global threshold; keep a layer dense (0) or drop the override")
        self.layers: list[tuple[str, nn.Conv2d]] = []
        self.current = 0.0

    def target(self, name: str) -> float:
        return self.overrides.get(name, self.sparsity)

    def prepare(self, model) -> "Sparsifier":
        """Register a :class:`Mask` on every conv whose target sparsity is above 0."""
        names = [n for n, _ in model.convs()]
        unknown = set(self.overrides) - set(names)
        if unknown:
            raise SenteiError(f"sparsity override for unknown layer(s) {sorted(unknown)}; layers are {names}")
        for name, conv in model.convs():
            if self.target(name) <= 0.0:
                continue
            try:  # a layer the scheme cannot group (G or M not dividing it) is refused before any epoch
                self.scheme.mask(conv.weight.detach(), self.target(name))
            except SenteiError as exc:
                raise SenteiError(f"layer {name}: {exc}") from None
            if not parametrize.is_parametrized(conv, "weight"):
                parametrize.register_parametrization(conv, "weight", Mask(conv.weight.shape))
            self.layers.append((name, conv))
        return self

    @staticmethod
    def _raw(conv) -> torch.Tensor:
        return conv.parametrizations.weight.original

    @staticmethod
    def _mask_buffer(conv) -> torch.Tensor:
        return conv.parametrizations.weight[0].mask

    @torch.no_grad()
    def step(self, fraction: float = 1.0) -> None:
        """Recompute the masks at ``fraction`` of each layer's target, then check the invariant."""
        self.current = float(fraction)
        if not self.layers:
            return
        targets = [self.target(n) * fraction for n, _ in self.layers]
        raws = [self._raw(c) for _, c in self.layers]
        if self.scheme.global_ranking:
            masks = self.scheme.global_masks(raws, targets)
        else:
            masks = [self.scheme.mask(w, s) for w, s in zip(raws, targets)]
        for (name, conv), mask, s in zip(self.layers, masks, targets):
            self.scheme.check(mask, s, name)
            self._mask_buffer(conv).copy_(mask.to(self._mask_buffer(conv).dtype))
            # pruned weights are zeroed; they get no gradient while masked, but AdamW's momentum
            # still moves them a little, so one that a later mask update brings back starts
            # from that small value, not exactly from zero
            self._raw(conv).mul_(mask)

    def check(self) -> None:
        """Check the scheme's invariant on the masks as they are now."""
        for name, conv in self.layers:
            self.scheme.check(self._mask_buffer(conv), self.target(name) * self.current, name)

    def squash(self) -> None:
        """Make the masks permanent: plain weights with zeros, no parametrization left."""
        for _, conv in self.layers:
            parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)
        self.layers = []


def nonzeros_per_filter(weight: torch.Tensor) -> torch.Tensor:
    """Nonzero weights in each output filter of ``[Cout, ...]``."""
    return (weight.reshape(weight.shape[0], -1) != 0).sum(dim=1)


def sparsity_of(weight: torch.Tensor) -> float:
    return 1.0 - float((weight != 0).sum()) / weight.numel()


__all__ = ["Mask", "Scheme", "FilterWise", "GroupWise", "NM", "Unstructured", "make_scheme", "OneShot",
           "Cubic", "make_schedule", "Sparsifier", "filter_k", "nonzeros_per_filter", "sparsity_of"]
