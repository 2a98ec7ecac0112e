"""Stage-2 training inputs of a batch of clips (§3.5): per frame, the padded detections of the B clips, each
detection's annotation id (the detection <-> annotation assignment, :func:`vis_rgnn.targets.assign_detections`) and
the annotations on the prototype grid.

Shapes: B clips, T frames, M detection slots (padded), G annotations of a frame, (h, w) the prototype grid.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from detectron2.structures import Instances

from .losses import FrameTargets
from .targets import assign_detections, gt_masks_on_grid
from .track_state import FrameDetections

__all__ = ["clip_training_frames"]


def clip_training_frames(
    dets: Sequence[Instances],
    appearance: Sequence[torch.Tensor],
    image_sizes: Sequence[Tuple[int, int]],
    gts: Sequence[Sequence[Instances]],
    det_match_iou: float,
    stride: int,
    background_appearance: Optional[torch.Tensor] = None,
    pixel_masks: bool = False,
    late_object_class: Optional[int] = None,
) -> Tuple[List[FrameDetections], List[torch.Tensor], List[List[FrameTargets]]]:
    """``dets``, ``appearance`` (M_i, A), ``image_sizes``: the detector's outputs of the B x T frames, video-major;
    ``background_appearance`` (B x T, A) or None: each frame's whole-image descriptor (the empty track's observation);
    ``pixel_masks``: also give the annotations at stride 1 (``FrameTargets.pixel_masks``, ``MASK_LOSS release``);
    ``gts``: B lists of T annotated Instances (gt_boxes, gt_classes, gt_masks, gt_ids) on the device; ``stride``
    of the prototype grid; ``late_object_class``: None, or the class target of every object not visible in its
    clip's first frame (the release's label zeroing, ``LOSS.LATE_OBJECT_CLASS "background"``: the background
    index). Returns, per frame t: the FrameDetections of the B clips, the annotation id per detection (B, M) (-1:
    none, IoU < ``det_match_iou``), and B FrameTargets."""
    b_size, length = len(gts), len(gts[0])
    # The input region the prototype grid covers: the padded input for detectron2's FPN, but larger than the
    # (unpadded) input for YOLACT's FPN when a side is not a multiple of 8 (2 ceil(H / 8) cells at stride 4).
    grid_h, grid_w = dets[0].pred_masks.shape[-2:]
    covered = (grid_h * stride, grid_w * stride)
    classes = [
        {int(i): int(c) for inst in video for i, c in zip(inst.gt_ids.tolist(), inst.gt_classes.tolist())}
        for video in gts
    ]
    if late_object_class is not None:
        for video, cls in zip(gts, classes):
            first = set(video[0].gt_ids.tolist())
            cls.update({i: late_object_class for i in cls if i not in first})
    frames_t, identities_t, targets_t = [], [], []
    for t in range(length):
        sel = [b * length + t for b in range(b_size)]
        frame = FrameDetections.from_instances(
            [dets[i] for i in sel],
            [appearance[i] for i in sel],
            [image_sizes[i] for i in sel],
            None if background_appearance is None else background_appearance[t::length],
        )
        det_identity = torch.full(frame.valid.shape, -1, dtype=torch.long, device=frame.valid.device)
        targets = []
        for b in range(b_size):
            gt = gts[b][t]
            n = int(frame.valid[b].sum())
            if len(gt) and n:
                match = assign_detections(frame.boxes[b, :n], gt.gt_boxes.tensor, det_match_iou)
                det_identity[b, :n] = torch.where(match >= 0, gt.gt_ids[match.clamp(min=0)], -1)
            full = gt_masks_on_grid(gt, covered, 1) if pixel_masks else None
            targets.append(FrameTargets(gt.gt_ids, gt_masks_on_grid(gt, covered, stride), classes[b], full))
        frames_t.append(frame)
        identities_t.append(det_identity)
        targets_t.append(targets)
    return frames_t, identities_t, targets_t
