"""RGNN-VIS detector post-processing on fixed-size padded tensors (no host syncs) against the compact reference
rule (threshold, top-k, decode + clip, drop empty boxes, Fast NMS, keep the best MAX_DETECTIONS)."""

import pytest
import torch
from detectron2.structures import Boxes
from torchvision.ops import box_iou

from tests.rgnn_references import fast_nms
from tests.rgnn_step_video import build
from vis_rgnn.box_ops import fast_nms_keep


def test_padding_neither_kept_nor_suppressing():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10.5], [20, 20, 30, 30]], dtype=torch.float)
    valid = torch.tensor([False, True, True, True])  # sorted by score; the first is padding
    assert fast_nms_keep(boxes, valid, 0.5).tolist() == [False, True, False, True]
    assert fast_nms_keep(boxes[:0], valid[:0], 0.5).shape == (0,)
    scores = torch.tensor([0.2, 0.9, 0.8, 0.7])
    assert fast_nms(boxes, scores, 0.5).tolist() == [1, 3]  # box 0 overlaps box 1 (IoU 0.83)


def reference(det, anchors, cls_logits, deltas, image_size):
    """The compact rule with data-dependent sizes: (boxes, scores, class probs) of the kept detections."""
    probs = cls_logits.softmax(-1)
    scores = probs[:, : det.num_classes].max(1).values
    keep = torch.nonzero(scores >= det.score_thresh).squeeze(1)
    if len(keep) > det.pre_nms_topk:
        keep = keep[scores[keep].topk(det.pre_nms_topk).indices]
    boxes = Boxes(det.box2box.apply_deltas(deltas[keep], anchors[keep]))
    boxes.clip(image_size)
    nonempty = boxes.nonempty(threshold=1e-3)
    keep, boxes = keep[nonempty], boxes.tensor[nonempty]
    order = scores[keep].argsort(descending=True)
    iou = box_iou(boxes[order], boxes[order]).triu_(1)
    kept = order[iou.max(0).values <= det.nms_thresh] if len(order) else order
    kept = kept[: det.max_detections]
    return boxes[kept], scores[keep][kept], probs[keep][kept]


@pytest.fixture(scope="module")
def det():
    return build("gnn_learned").detector


@pytest.mark.parametrize("seed", range(6))
def test_inference_single_matches_the_compact_rule(det, seed):
    g = torch.Generator().manual_seed(seed)
    a, k = 300, det.num_classes + 1
    xy = torch.rand(a, 2, generator=g) * 90
    anchors = torch.cat([xy, xy + 4 + torch.rand(a, 2, generator=g) * 30], dim=1)
    cls_logits = torch.randn(a, k, generator=g) * (0.5 + seed)
    cls_logits[:, -1] += 1.0
    deltas = torch.randn(a, 4, generator=g) * 0.3
    deltas[:10, 2:] = -20.0  # collapsed boxes: dropped as empty
    coeffs = torch.randn(a, 8, generator=g).tanh()
    protos = torch.rand(8, 16, 24, generator=g)
    out = det.inference_single(Boxes(anchors), cls_logits, deltas, coeffs, protos, (60, 90))
    assert len(out) == min(det.max_detections, det.pre_nms_topk) and out.valid.dtype == torch.bool
    boxes, scores, probs = reference(det, anchors, cls_logits, deltas, (60, 90))
    n = int(out.valid.sum())
    assert n == len(scores)
    assert bool(out.valid[:n].all())  # valid entries first, by decreasing score
    torch.testing.assert_close(out.pred_boxes.tensor[:n], boxes)
    torch.testing.assert_close(out.scores[:n], scores)
    torch.testing.assert_close(out.class_probs[:n], probs)
    assert (out.scores[n:] == 0).all() and (out.pred_masks[n:] == 0).all()
    compact = out[out.valid]
    assert len(compact) == n and compact.pred_masks.shape[1:] == (16, 24)
