"""Losses: class-weighted cross-entropy, and distillation of a pruned student from its teacher.

:func:`distill_loss` mixes the label loss with the pixel-wise KL divergence between the
temperature-softened class distributions of teacher and student (Hinton et al.), taken at
the full label resolution after the same bilinear upsampling the host applies, with void
pixels left out; optionally a hint loss (mean squared error between one intermediate
feature map of each, FitNets) pulls the student's features toward the teacher's.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sentei.host.data.camvid import VOID
from sentei.training.models import upsample_logits



def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None,
                      ignore: int = VOID) -> torch.Tensor:
    """Cross-entropy of low-resolution ``logits`` upsampled to the labels, void ignored."""
    return _ce(_up(logits, labels), labels, weights, ignore)


def kd_kl(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor, temperature: float,
          ignore: int = VOID) -> torch.Tensor:
    """Mean over non-void pixels of ``T^2 KL(softmax(t/T) || softmax(s/T))`` at label resolution."""
    return _kl(_up(student, labels), _up(teacher, labels), labels, temperature, ignore)


def _up(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    # NCHW for the full-resolution losses: softmax over dim 1 of a channels_last tensor is slower on CPU
    return upsample_logits(logits.float().contiguous(), labels.shape[-2], labels.shape[-1])


def _ce(up, labels, weights, ignore=VOID):
    return F.cross_entropy(up, labels.long(), weight=weights, ignore_index=ignore)


def _kl(s_up, t_up, labels, temperature, ignore=VOID):
    s, t = s_up / temperature, t_up / temperature
    kl = (F.softmax(t, dim=1) * (F.log_softmax(t, dim=1) - F.log_softmax(s, dim=1))).sum(dim=1)
    keep = (labels != ignore).to(kl.dtype)
    return kl.mul(keep).sum() / keep.sum().clamp_min(1.0) * temperature**2


@dataclass
class Distillation:
    """Weights of the mixed loss: ``(1 - alpha) CE + alpha KD + hint_weight * hint``.

    ``hint_layer`` indexes the student's and teacher's block outputs (None: no hint loss).
    """

    enabled: bool = True
    alpha: float = 0.7
    temperature: float = 2.0
    hint_layer: int | None = None
    hint_weight: float = 0.0

    @classmethod
    def from_config(cls, cfg: dict | None) -> "Distillation":
        cfg = dict(cfg or {})
        hint = cfg.get("hint_layer")
        return cls(enabled=bool(cfg.get("enabled", True)), alpha=float(cfg.get("alpha", 0.7)),
                   temperature=float(cfg.get("temperature", 2.0)),
                   hint_layer=None if hint is None else int(hint), hint_weight=float(cfg.get("hint_weight", 0.0)))

    def loss(self, student_logits, labels, class_weights, teacher_logits=None, student_feat=None,
             teacher_feat=None) -> tuple[torch.Tensor, dict]:
        """The mixed loss and its parts (detached tensors, for the log).

        The student's logits are upsampled to the labels once, for both losses.
        """
        up = _up(student_logits, labels)
        ce = _ce(up, labels, class_weights)
        parts = {"ce": ce.detach()}
        if not self.enabled or teacher_logits is None:
            return ce, parts
        kd = _kl(up, _up(teacher_logits, labels), labels, self.temperature)
        parts["kd"] = kd.detach()
        total = (1.0 - self.alpha) * ce + self.alpha * kd
        if self.hint_layer is not None and self.hint_weight > 0 and student_feat is not None:
            hint = F.mse_loss(student_feat.float(), teacher_feat.float())
            parts["hint"] = hint.detach()
            total = total + self.hint_weight * hint
        return total, parts
