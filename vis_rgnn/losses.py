"""Stage-2 losses of RGNN-VIS (§3.5, eq. 5): L = w_cls L_cls + w_mask L_lovasz + w_match L_match + w_new L_new.

Targets come from the detection <-> annotation assignment (:func:`vis_rgnn.targets.assign_detections`) and
each track's identity (the annotation of the detection that initialised it, see
:func:`vis_rgnn.track_identities.new_track_identity`):

- L_cls: cross-entropy of every alive track's class logits against the class of its identity (background if
  none), frame t of a T-frame clip weighted by decay^(T-1-t) normalised to mean 1 (later frames weigh more).
- L_lovasz (``LOSS.MASK_LOSS "joint"``, the paper): the annotated instance map of the frame, its object ids
  mapped to the track identities, against the joint map of the tracks -- per pixel a softmax over the video's
  tracks holding a detection and a background logit 0 (at test time a pixel goes to the highest-logit track if
  that logit is > 0, :func:`vis_rgnn.heads.exclusive_masks`) -- with the Lovász-softmax loss (Berman et al.
  2018) summed over the tracks' channels: tracks compete for pixels in the loss as at test time. An identity
  held by several tracks belongs to the first one (lowest slot); the others' target is empty.
  ``"per_track"``: Lovász hinge of each re-weighted track mask alone against its identity's mask.
  ``"release"`` (the release's ``SegLoss('Lovasz per image')`` of ``VISObjective._vis_loss``): per image, the
  softmax over [a constant background score 10, every track slot's mask logit (-20 for slots holding no
  detection)] upsampled bilinearly to the input, against the annotated instance map whose objects are mapped to
  the lowest slot carrying their annotation *at the clip's last frame* (background otherwise, also before that
  track started), with the Lovász-softmax averaged over the classes present in the image; the mean over the
  B x T images (not frame-weighted), :func:`release_mask_loss`.
- L_match: binary cross-entropy of every active track x detection logit; positive iff the detection's
  annotation is the track's identity.
- L_new: binary cross-entropy of every detection's new-track logit; positive iff the detection is assigned to
  an annotation that no track has yet.

All four (L_lovasz "release": a mean per image) are sums over tracks / detections divided by (batch size x
sequence length) only, so false-positive
tracks or detections do not dilute the loss of the others (§3.5).

Shapes: B clips, T frames, N track slots (N' the leading ones the GNN processed), M detection slots (padded),
G annotations of a frame, P tracks holding a detection, (H, W) / (h, w) the prototype grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from .track_state import FrameDetections, FrameOutput
from .tracker import RGNNTracker

__all__ = [
    "lovasz_hinge",
    "lovasz_softmax_joint",
    "lovasz_softmax_present",
    "release_mask_loss",
    "MASK_LOSSES",
    "FrameTargets",
    "frame_weights",
    "tracker_frame_losses",
    "tracker_clip_losses",
]


def _lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss w.r.t. sorted errors. gt_sorted: (P, n) in {0,1}."""
    gts = gt_sorted.sum(dim=1, keepdim=True)
    intersection = gts - gt_sorted.cumsum(dim=1)
    union = gts + (1 - gt_sorted).cumsum(dim=1)
    jaccard = 1.0 - intersection / union
    return torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], dim=1)


def lovasz_hinge(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-mask Lovász hinge. logits: (P, H, W); labels: (P, H, W) in {0, 1}. Returns (P,)."""
    if logits.shape[0] == 0:  # no mask: (0,) still in the graph, so the re-weighting CNN gets a zero gradient
        return logits.flatten(1).sum(dim=1)
    logits, labels = logits.flatten(1), labels.flatten(1).to(logits.dtype)
    errors = 1.0 - logits * (2.0 * labels - 1.0)
    errors_sorted, perm = errors.sort(dim=1, descending=True)
    grad = _lovasz_grad(labels.gather(1, perm))
    return (F.relu(errors_sorted) * grad).sum(dim=1)


MASK_LOSSES = ("joint", "per_track", "release")
RELEASE_BACKGROUND_SCORE = 10.0  # the release's background channel of the instance score maps
RELEASE_NO_MASK_SCORE = -20.0  # the release's score map of a slot holding no detection


def joint_track_probs(logits: torch.Tensor, video: torch.Tensor, num_videos: int) -> torch.Tensor:
    """Per-pixel softmax over each video's tracks and a background logit 0. logits: (P, H, W) of P tracks;
    video: (P,) their video index. Returns (P, H, W) probabilities (each video's sum over tracks <= 1)."""
    index = video.view(-1, 1, 1).expand_as(logits)
    peak = logits.new_zeros((num_videos,) + logits.shape[1:]).scatter_reduce(
        0, index, logits.detach(), reduce="amax", include_self=True
    )  # max(0, logits of the video): a stable shift for its softmax
    shifted = (logits - peak[video]).exp()
    denom = (-peak).exp().index_add(0, video, shifted)
    return shifted / denom[video]


def lovasz_softmax_joint(
    logits: torch.Tensor, labels: torch.Tensor, video: torch.Tensor, num_videos: int
) -> torch.Tensor:
    """Lovász-softmax of each track's channel of the joint instance map. logits, labels: (P, H, W), labels in
    {0, 1} and disjoint within a video; video: (P,). Returns (P,)."""
    if logits.shape[0] == 0:  # (0,) still in the graph, so the re-weighting CNN gets a zero gradient
        return logits.flatten(1).sum(dim=1)
    probs = joint_track_probs(logits, video, num_videos).flatten(1)
    labels = labels.flatten(1).to(probs.dtype)
    errors_sorted, perm = (labels - probs).abs().sort(dim=1, descending=True)
    return (errors_sorted * _lovasz_grad(labels.gather(1, perm))).sum(dim=1)


def lovasz_softmax_present(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Lovász-softmax of one image averaged over the classes present in ``labels`` (Berman et al. 2018; the
    release's ``lovasz_softmax_flat(classes='present')``). probs: (C, P) per-pixel class probabilities; labels:
    (P,) int64 in [0, C). Returns a scalar (0, still in the graph, without pixels). Every class is sorted at once
    and the absent ones masked, so there is no host sync."""
    c = probs.shape[0]
    fg = F.one_hot(labels, c).t().to(probs.dtype)  # (C, P)
    errors_sorted, perm = (fg - probs).abs().sort(dim=1, descending=True)
    per_class = (errors_sorted * _lovasz_grad(fg.gather(1, perm))).sum(dim=1)  # (C,)
    present = (fg.sum(dim=1) > 0).to(probs.dtype)
    return (per_class * present).sum() / present.sum().clamp(min=1)


@dataclass
class FrameTargets:
    """Annotations of one frame of one clip: ids (G,) annotation ids, masks (G, h, w) on the prototype grid,
    and ``classes``: annotation id -> class for every object of the whole clip; pixel_masks (G, H, W) the same
    masks at stride 1 on the region the grid covers (``MASK_LOSS "release"`` only, else None)."""

    ids: torch.Tensor
    masks: torch.Tensor
    classes: Dict[int, int]
    pixel_masks: Optional[torch.Tensor] = None


def release_mask_loss(
    out: FrameOutput, final_identity: torch.Tensor, targets: List[FrameTargets], image_sizes: torch.Tensor, stride: int
) -> torch.Tensor:
    """``MASK_LOSS "release"`` of one frame, summed over its B images (see the module docstring).

    out: the frame's tracker output (mask_logits (P, h, w), mask_index (P, 2)); final_identity (B, N): the
    track identities after the clip's last frame; targets[b].pixel_masks (G, h x stride, w x stride);
    image_sizes (B, 2) = (H, W) of the input, the region the loss covers."""
    b_size, n = final_identity.shape
    h, w = out.mask_logits.shape[-2:]
    dense = out.mask_logits.new_full((b_size, n, h, w), RELEASE_NO_MASK_SCORE)
    dense = dense.index_put((out.mask_index[:, 0], out.mask_index[:, 1]), out.mask_logits)
    scores = torch.cat([dense.new_full((b_size, 1, h, w), RELEASE_BACKGROUND_SCORE), dense], dim=1)
    scores = F.interpolate(scores, size=(h * stride, w * stride), mode="bilinear", align_corners=False)
    total = scores.new_zeros(())
    for b, (img_h, img_w) in enumerate(image_sizes.round().long().tolist()):
        tgt = targets[b]
        if tgt.pixel_masks is None:
            raise ValueError("MASK_LOSS release needs FrameTargets.pixel_masks (clip_training_frames pixel_masks)")
        owner = final_identity[b][None, :] == tgt.ids[:, None]  # (G, N): slots carrying each annotation
        label_of = torch.where(owner.any(dim=1), owner.to(torch.uint8).argmax(dim=1) + 1, 0)  # lowest slot + 1
        pix = tgt.pixel_masks[:, :img_h, :img_w] > 0.5
        labels = (pix.long() * label_of[:, None, None]).amax(dim=0) if len(tgt.ids) else pix.new_zeros(img_h, img_w)
        probs = scores[b, :, :img_h, :img_w].softmax(dim=0).flatten(1)
        total = total + lovasz_softmax_present(probs, labels.long().flatten())
    return total


def frame_weights(length: int, decay: float) -> List[float]:
    """decay^(T-1-t) for t = 0..T-1, normalised to mean 1."""
    w = [decay ** (length - 1 - t) for t in range(length)]
    return [x * length / sum(w) for x in w]


def tracker_frame_losses(
    out: FrameOutput,
    identity: torch.Tensor,
    det_identity: torch.Tensor,
    targets: List[FrameTargets],
    num_classes: int,
    class_weight: float,
    mask_loss: str = "joint",
) -> Dict[str, torch.Tensor]:
    """Un-normalised (summed) losses of one frame for B clips.

    identity (B, N): track identities after the step; det_identity (B, M): annotation id per detection or -1;
    ``class_weight``: this frame's class-loss weight. Returns sums; the caller divides by B x T.
    """
    # Association: match targets use the identities the tracks had when the logits were computed.
    prev = out.prev_identity
    same = (prev[:, :, None] == det_identity[:, None, :]) & (prev[:, :, None] >= 0)
    match = F.binary_cross_entropy_with_logits(out.match_logits, same.to(out.match_logits.dtype), reduction="none")
    loss_match = torch.where(out.edge_mask, match, 0.0).sum()

    tracked = ((prev[:, :, None] == det_identity[:, None, :]) & out.prev_alive[:, :, None]).any(dim=1)
    should_init = (det_identity >= 0) & ~tracked
    new = F.binary_cross_entropy_with_logits(out.new_logits, should_init.to(out.new_logits.dtype), reduction="none")
    loss_new = torch.where(out.det_valid, new, 0.0).sum()

    # Scoring: class of the identity, background (index K) otherwise.
    cls_target = torch.full_like(identity, num_classes)
    for b, tgt in enumerate(targets):
        for s in (identity[b] >= 0).nonzero().squeeze(1).tolist():
            cls_target[b, s] = tgt.classes[int(identity[b, s])]
    ce = F.cross_entropy(out.class_logits.flatten(0, 1), cls_target.flatten(), reduction="none").view_as(identity)
    loss_cls = class_weight * torch.where(out.alive, ce, 0.0).sum()

    # Masks: each re-weighted track mask against its identity's mask in this frame.
    if mask_loss == "release":
        return {"loss_class": loss_cls, "loss_match": loss_match, "loss_new_track": loss_new}
    mask_t = out.mask_logits.new_zeros(out.mask_logits.shape)
    claimed = set()  # (video, identity) pairs already given to a track (mask_index is sorted by slot)
    for p, (b, s) in enumerate(out.mask_index.tolist()):
        hit = (targets[b].ids == identity[b, s]) & (identity[b, s] >= 0)
        key = (b, int(identity[b, s]))
        if hit.any() and not (mask_loss == "joint" and key in claimed):
            mask_t[p] = (targets[b].masks[hit.nonzero()[0, 0]] > 0.5).to(mask_t.dtype)
            claimed.add(key)
    if mask_loss == "joint":
        loss_mask = lovasz_softmax_joint(out.mask_logits, mask_t, out.mask_index[:, 0], identity.shape[0]).sum()
    else:
        loss_mask = lovasz_hinge(out.mask_logits, mask_t).sum()
    return {"loss_class": loss_cls, "loss_mask": loss_mask, "loss_match": loss_match, "loss_new_track": loss_new}


def tracker_clip_losses(
    tracker: RGNNTracker,
    frames: List[FrameDetections],
    det_identities: List[torch.Tensor],
    targets: List[List[FrameTargets]],
    frame_decay: float,
    loss_weights: Dict[str, float],
    mask_loss: str = "joint",
) -> Dict[str, torch.Tensor]:
    """Feed B clips of T frames through ``tracker`` as at inference and return the weighted losses of eq. (5),
    each normalised by B x T. frames[t]: detections of frame t; det_identities[t]: (B, M_t) annotation ids;
    targets[t][b]: annotations of frame t of clip b."""
    length, b_size = len(frames), frames[0].valid.shape[0]
    state = tracker.init_state(b_size, frames[0].boxes.device)
    weights = frame_weights(length, frame_decay)
    totals: Dict[str, torch.Tensor] = {}
    outs = []
    for t in range(length):
        out = tracker.step(state, frames[t], det_identities[t])
        losses = tracker_frame_losses(
            out, state.identity, det_identities[t], targets[t], tracker.num_classes, weights[t], mask_loss
        )
        for k, v in losses.items():
            totals[k] = totals[k] + v if k in totals else v
        outs.append(out)
    if mask_loss == "release":  # targets follow the identities at the clip's last frame
        totals["loss_mask"] = sum(
            release_mask_loss(out, state.identity, targets[t], frames[t].image_sizes, tracker.mask_stride)
            for t, out in enumerate(outs)
        )
    return {k: loss_weights[k] * v / float(b_size * length) for k, v in totals.items()}
