"""The detection and mask terms of eq. (7) on a batch of (k, t) training pairs (§3.6); the association term is
each cue's :meth:`.association.Association.training_losses`.

- λ1 · L_det: eq. (3) on the heads' outputs for F̂_t (and F_k with ``DET.REF_FRAME_LOSS``);
- λ2 · L_mask (§3.4): dice loss of the masks of θ_t (eq. (4)) and θ_warp = warp(θ_k) (eq. (5)) on frame t, and
  of θ_k on frame k, decoded at (and around) every GT centre cell.

Shapes: B images, L levels (B, D, H_l, W_l), G GT objects, P kernels (G × cells within ``MASK.POS_RADIUS``).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.structures import Instances
from torch import nn

from .association import PairInputs
from .detection_head import CenterNetHead, DetectionLossSettings
from .kernel_warp import KernelWarp
from .losses import dice_loss
from .mask_head import downsample_gt_masks
from .targets import CenterTargets, expand_positives, gather_at_cells

__all__ = ["detection_losses", "segmentation_losses", "mask_loss"]

#: (mask features, kernels (P, 169), level (P,), cells (P, 2), batch index (P,)) -> mask logits (P, h, w)
DecodeMasks = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def detection_losses(
    det_out: Tuple[List[torch.Tensor], List[torch.Tensor], List[torch.Tensor]],
    targets: CenterTargets,
    settings: DetectionLossSettings,
    weight: float = 1.0,
) -> Dict[str, torch.Tensor]:
    """λ1 · eq. (3) for the CenterNet outputs ``det_out`` (heat maps, sizes, offsets per level), per term."""
    raw = CenterNetHead.losses(*det_out, targets, settings.focal_alpha, settings.focal_beta)
    return {
        "loss_center": weight * raw["loss_center"],
        "loss_size": weight * settings.size_weight * raw["loss_size"],
        "loss_offset": weight * settings.offset_weight * raw["loss_offset"],
    }


def segmentation_losses(
    pair: PairInputs,
    inst_k: List[Instances],
    inst_t: List[Instances],
    padded: Tuple[int, int],
    controller: nn.Module,
    mask_branch: nn.Module,
    kernel_warp: Optional[KernelWarp],
    decode_masks: DecodeMasks,
    out_stride: int,
    pos_radius: int,
    weight: float = 1.0,
) -> Dict[str, torch.Tensor]:
    """λ2 · L_mask: θ_t from the heads' input F̂_t and θ_warp = warp(θ_k) on frame t, θ_k on frame k.

    θ_k comes from the plain F_k here, while at test time frame t-1's kernels come from its fused F̂_{t-1}:
    a frame pair has no frame before k to fuse F_k with (the paper trains on pairs). F̂ = F + messages with
    the message MLP's last layer zero-initialised, so the two start equal and the controller sees both
    kinds of input in training (plain on frame k, fused on frame t). ``inst_*``: the GT of frames k / t;
    ``padded``: the batch's padded input size."""
    heads_in, feats_k, feats_t, shapes = pair.heads_in, pair.feats_k, pair.feats_t, pair.shapes
    targets_k, targets_t = pair.targets_k, pair.targets_t
    gt_masks_t = torch.cat(downsample_gt_masks(inst_t, padded, out_stride))
    gt_masks_k = torch.cat(downsample_gt_masks(inst_k, padded, out_stride))
    thetas_t, thetas_k = controller(heads_in), controller(feats_k)
    mask_feats_t, mask_feats_k = mask_branch(heads_in[0], pair.fine_t), mask_branch(feats_k[0], pair.fine_k)

    def loss(thetas, mask_feats, targets, gt_masks):
        return weight * mask_loss(decode_masks, thetas, mask_feats, targets, gt_masks, shapes, pos_radius)

    losses = {"loss_mask": loss(thetas_t, mask_feats_t, targets_t, gt_masks_t)}
    if kernel_warp is not None:
        thetas_w = kernel_warp.warp_levels(thetas_k, feats_k, feats_t)
        losses["loss_mask_warp"] = loss(thetas_w, mask_feats_t, targets_t, gt_masks_t)
    losses["loss_mask_ref"] = loss(thetas_k, mask_feats_k, targets_k, gt_masks_k)
    return losses


def mask_loss(
    decode_masks: DecodeMasks,
    thetas: List[torch.Tensor],
    mask_feats: torch.Tensor,
    targets: CenterTargets,
    gt_masks: torch.Tensor,
    shapes: Sequence[Tuple[int, int]],
    pos_radius: int,
) -> torch.Tensor:
    """Mean dice loss of the masks decoded by the kernels ``thetas`` (per level (B, 169, H, W)) at every GT
    centre cell and the cells within ``pos_radius`` of it; ``gt_masks`` (G, h, w) at the mask resolution."""
    idx, cells = expand_positives(targets, pos_radius, shapes)
    if idx.numel() == 0:
        return sum(t.sum() for t in thetas) * 0.0 + mask_feats.sum() * 0.0
    level, batch_idx = targets.level[idx], targets.batch_idx[idx]
    kernels = gather_at_cells(thetas, level, batch_idx, cells)
    logits = decode_masks(mask_feats, kernels, level, cells, batch_idx)
    return dice_loss(logits, gt_masks[idx]).mean()
