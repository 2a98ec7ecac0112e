"""YOLACT architecture facts, each against hand-computed values: anchor layout and order, box decoding, class-aware
Fast NMS semantics, mask crop, input normalisation / BGR -> RGB, FPN / protonet / head wiring."""

import math

import pytest
import torch
import torch.nn.functional as F
from detectron2.config import get_cfg
from detectron2.modeling import build_backbone
from detectron2.modeling.box_regression import Box2BoxTransform

from projects.config import add_video_config
from vis_rgnn import add_rgnn_config
from vis_rgnn.detector import PredictionHead, ProtoNet
from vis_rgnn.image_input import channel_flip, prepare_images
from vis_rgnn.yolact_anchors import YolactAnchorGenerator
from vis_rgnn.yolact_fpn import YolactFPN
from vis_rgnn.yolact_postprocess import (
    ImagePostprocessParams,
    class_fast_nms,
    crop_to_boxes,
    decode_boxes,
    image_detections,
    sanitize_coordinates,
)

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------------- anchors
def test_anchor_layout_order_and_square_quirk():
    gen = YolactAnchorGenerator([[24], [48]], [[1.0, 0.5, 2.0]])
    assert gen.num_cell_anchors == [3, 3]
    p = gen.normalized_priors([(2, 3), (1, 1)], (550, 550))
    assert p.shape == (2 * 3 * 3 + 3, 4)
    s = 24 / 550
    # location (row 0, col 0): ratios 1, 1/2, 2 -> width 24 * sqrt(ar), height = width
    r_half, r_two = s * math.sqrt(0.5), s * math.sqrt(2)
    expected = torch.tensor([[0.5 / 3, 0.25, s, s], [0.5 / 3, 0.25, r_half, r_half], [0.5 / 3, 0.25, r_two, r_two]])
    torch.testing.assert_close(p[:3], expected)
    # next location is (row 0, col 1) (row-major), then (row 1, col 0) at index 3 * 3
    torch.testing.assert_close(p[3, :2], torch.tensor([1.5 / 3, 0.25]))
    torch.testing.assert_close(p[9, :2], torch.tensor([0.5 / 3, 0.75]))
    # second level (1 x 1 map): centre (0.5, 0.5), size 48
    torch.testing.assert_close(p[18], torch.tensor([0.5, 0.5, 48 / 550, 48 / 550]))


def test_anchor_without_square_quirk_and_pixel_boxes():
    gen = YolactAnchorGenerator([[20]], [[2.0]], square=False)
    (boxes,) = gen([torch.zeros(1, 1, 1, 2)], (100, 200))
    w, h = 20 * math.sqrt(2), 20 / math.sqrt(2)
    # centres at (i + 0.5) / w_l of the input, i.e. x = 50 and 150 px on a 200-px-wide input
    torch.testing.assert_close(boxes.tensor[1], torch.tensor([150 - w / 2, 50 - h / 2, 150 + w / 2, 50 + h / 2]))


def test_prior_count_at_550_matches_yolact():
    """69, 35, 18, 9, 5 cells for P3-P7 at 550 x 550: YOLACT's 19248 priors."""
    cfg = _yolact_cfg()
    backbone = build_backbone(cfg).eval()
    with torch.no_grad():
        feats = backbone(torch.zeros(1, 3, 550, 550))
    assert [feats[f"p{lvl}"].shape[-1] for lvl in range(3, 8)] == [69, 35, 18, 9, 5]
    gen = YolactAnchorGenerator(cfg.MODEL.ANCHOR_GENERATOR.SIZES, cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS)
    assert (
        gen.normalized_priors([tuple(feats[f"p{lvl}"].shape[-2:]) for lvl in range(3, 8)], (550, 550)).shape[0] == 19248
    )


# ------------------------------------------------------------------------------------------------ decoding
def test_decode_hand_computed_and_equal_to_detectron2_transform():
    prior = torch.tensor([[0.5, 0.5, 0.2, 0.1]])
    delta = torch.tensor([[1.0, -1.0, 0.0, math.log(2) / 0.2]])
    # centre (0.5 + 1 * 0.1 * 0.2, 0.5 - 1 * 0.1 * 0.1); size (0.2, 0.1 * 2)
    torch.testing.assert_close(decode_boxes(delta, prior), torch.tensor([[0.42, 0.39, 0.62, 0.59]]))
    g = torch.Generator().manual_seed(0)
    priors = torch.rand(50, 4, generator=g) * 0.5 + 0.1
    deltas = torch.randn(50, 4, generator=g)
    xyxy = torch.cat([priors[:, :2] - priors[:, 2:] / 2, priors[:, :2] + priors[:, 2:] / 2], 1)
    d2 = Box2BoxTransform(weights=(10.0, 10.0, 5.0, 5.0)).apply_deltas(deltas, xyxy)
    torch.testing.assert_close(decode_boxes(deltas, priors, (0.1, 0.2)), d2)


# ------------------------------------------------------------------------------------------------ Fast NMS
def _boxes():
    # A and B overlap (IoU 0.6), B and C overlap (IoU 0.6), A and C do not.
    return torch.tensor(
        [[0.0, 0.0, 10.0, 10.0], [2.5, 0.0, 12.5, 10.0], [5.0, 0.0, 15.0, 10.0], [50.0, 50.0, 60.0, 60.0]]
    )


def test_fast_nms_suppressed_boxes_still_suppress_and_classes_are_independent():
    scores = torch.tensor([[0.9, 0.01], [0.8, 0.02], [0.7, 0.6], [0.01, 0.3]])
    idx, cls, sc, valid = class_fast_nms(_boxes(), scores, ImagePostprocessParams(conf_thresh=0.05, nms_thresh=0.5))
    dets = {(int(i), int(c), round(float(s), 4)) for i, c, s, v in zip(idx, cls, sc, valid) if v}
    # class 0: A keeps, B (by A) and C (by the suppressed B -- Fast NMS) go; D (0.01) survives its class NMS
    # because its anchor is a candidate (0.3 in class 1) and SECOND_THRESHOLD is off.
    # class 1: C (0.6) first, D (0.3) disjoint, B (0.02) overlaps C, A (0.01) disjoint from C, overlaps B only.
    assert dets == {(0, 0, 0.9), (3, 0, 0.01), (2, 1, 0.6), (3, 1, 0.3)}
    assert sc[valid].tolist() == sorted(sc[valid].tolist(), reverse=True)
    assert valid.tolist() == sorted(valid.tolist(), reverse=True)  # valid entries form a prefix


def test_fast_nms_second_threshold_candidates_topk_and_max_detections():
    scores = torch.tensor([[0.9, 0.01], [0.8, 0.02], [0.7, 0.6], [0.01, 0.3]])
    params = ImagePostprocessParams(conf_thresh=0.05, nms_thresh=0.5, second_threshold=True)
    idx, cls, sc, valid = class_fast_nms(_boxes(), scores, params)
    assert {(int(i), int(c)) for i, c, v in zip(idx, cls, valid) if v} == {(0, 0), (2, 1), (3, 1)}
    # candidate filter is strict (> CONF_THRESH) on the best class; a box at exactly 0.05 is not a candidate
    idx, cls, sc, valid = class_fast_nms(_boxes()[:1], torch.tensor([[0.05, 0.0]]), ImagePostprocessParams())
    assert not valid.any()
    # TOP_K per class: only the best box of class 0 enters NMS; MAX_DETECTIONS caps the union
    idx, cls, sc, valid = class_fast_nms(_boxes(), scores, ImagePostprocessParams(top_k=1))
    assert {(int(i), int(c)) for i, c, v in zip(idx, cls, valid) if v} == {(0, 0), (2, 1)}
    idx, cls, sc, valid = class_fast_nms(_boxes(), scores, ImagePostprocessParams(max_detections=2))
    assert len(idx) == 2 and torch.allclose(sc, torch.tensor([0.9, 0.6]))


def test_fast_nms_iou_threshold_is_inclusive():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0]])  # IoU exactly 0.5
    idx, cls, sc, valid = class_fast_nms(boxes, torch.tensor([[0.9], [0.8]]), ImagePostprocessParams(nms_thresh=0.5))
    assert int(valid.sum()) == 2  # kept when IoU <= threshold


# ---------------------------------------------------------------------------------------- crop and boxes
def test_crop_sanitize_with_padding_hand_computed():
    masks = torch.ones(2, 10, 10)
    boxes = torch.tensor([[0.2, 0.3, 0.55, 0.7], [0.95, 0.05, 0.85, 0.0]])  # second: unordered, at the border
    out = crop_to_boxes(masks, boxes, padding=1)
    expected = torch.zeros(10, 10)
    expected[2:8, 1:7] = 1  # x in [2 - 1, 5.5 + 1) -> cols 1..6; y in [3 - 1, 7 + 1) -> rows 2..7
    assert torch.equal(out[0], expected)
    expected = torch.zeros(10, 10)
    expected[0:2, 8:10] = 1  # x in [8.5 - 1, min(9.5 + 1, 10)) -> cols 8, 9; y in [max(0 - 1, 0), 0.5 + 1) -> 0, 1
    assert torch.equal(out[1], expected)
    lo, hi = sanitize_coordinates(torch.tensor([0.5, -0.2]), torch.tensor([0.1, 1.3]), 100, 100)
    assert lo.tolist() == pytest.approx([10.0, 0.0]) and hi.tolist() == pytest.approx([50.0, 100.0])


def test_image_detections_boxes_truncated_masks_upsampled_and_thresholded():
    # One anchor, one class; prototypes (1, 4, 4) = 10 everywhere, coefficient 1 -> mask prob ~1 inside the crop.
    boxes = torch.tensor([[0.1234, 0.25, 0.6, 0.74]])
    protos = torch.full((1, 4, 4), 10.0)
    inst = image_detections(
        boxes, torch.tensor([[0.9]]), torch.ones(1, 1), protos, (8, 8), (8, 8), (40, 64), ImagePostprocessParams()
    )
    assert inst.image_size == (40, 64)
    # x: 0.1234 * 64 = 7.9 -> 7; 0.6 * 64 = 38.4 -> 38; y: 10, 29.6 -> 29 (YOLACT's .long())
    assert inst.pred_boxes.tensor.tolist() == [[7.0, 10.0, 38.0, 29.0]]
    # crop on the 4x4 grid with 1 cell padding: x in [0, 3.4) -> cols 0..3, y in [0, 3.96) -> rows 0..3
    cropped = torch.sigmoid(protos) * crop_to_boxes(torch.ones(1, 4, 4), boxes, 1)
    ref = F.interpolate(cropped[None], size=(40, 64), mode="bilinear", align_corners=False)[0] > 0.5
    assert torch.equal(inst.pred_masks, ref) and inst.pred_masks.dtype == torch.bool
    assert inst.pred_classes.tolist() == [0] and inst.scores.tolist() == pytest.approx([0.9])


def test_image_detections_empty():
    inst = image_detections(
        torch.tensor([[0.1, 0.1, 0.2, 0.2]]),
        torch.tensor([[0.01]]),
        torch.ones(1, 1),
        torch.ones(1, 4, 4),
        (8, 8),
        (8, 8),
        (16, 16),
        ImagePostprocessParams(),
    )
    assert len(inst) == 0 and inst.pred_masks.shape == (0, 16, 16)


# ------------------------------------------------------------------------------------------ normalisation
def test_fast_base_transform_resize_normalise_bgr_to_rgb():
    bgr = torch.tensor([10, 20, 30], dtype=torch.uint8).view(3, 1, 1).expand(3, 2, 2).clone()
    bgr[:, 0, 0] = torch.tensor([200, 100, 50], dtype=torch.uint8)
    mean = torch.tensor([103.94, 116.78, 123.68]).view(3, 1, 1)
    std = torch.tensor([57.38, 57.12, 58.40]).view(3, 1, 1)
    batch = prepare_images([bgr], mean, std, 0, resize=(4, 4), flip_channels=channel_flip("BGR", "RGB"))
    x = batch.tensor[0]
    assert x.shape == (3, 4, 4) and batch.image_sizes == [(4, 4)]
    # bottom-right pixel only sees the (10, 20, 30) BGR value: channel 0 is red
    torch.testing.assert_close(
        x[:, 3, 3], torch.tensor([(30 - 123.68) / 58.40, (20 - 116.78) / 57.12, (10 - 103.94) / 57.38])
    )
    up = F.interpolate(bgr.float()[None], size=(4, 4), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(x, ((up - mean) / std).flip(0))
    assert not channel_flip("BGR", "") and not channel_flip("RGB", "RGB")
    with pytest.raises(ValueError, match="NETWORK_FORMAT"):
        channel_flip("BGR", "L")


# ------------------------------------------------------------------------------------------ network wiring
def _yolact_cfg(depth: int = 50):
    cfg = get_cfg()
    add_video_config(cfg)
    add_rgnn_config(cfg)
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cfg.merge_from_file(os.path.join(root, "configs", "vis_rgnn", "yolact_R50_coco.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.DEPTH = depth
    return cfg


def test_resnet_is_torchvision_style():
    cfg = _yolact_cfg()
    block = build_backbone(cfg).bottom_up.res3[0]
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2)
    assert block.conv1.norm.eps == 1e-5


def test_fpn_wiring_bilinear_relu_and_p6_p7():
    cfg = _yolact_cfg(depth=18)
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64
    cfg.MODEL.FPN.OUT_CHANNELS = 8
    fpn = build_backbone(cfg).eval()
    assert isinstance(fpn, YolactFPN) and fpn.size_divisibility == 0
    x = torch.randn(1, 3, 100, 76)
    with torch.no_grad():
        out = fpn(x)
        c = fpn.bottom_up(x)
        l5 = fpn.fpn_lateral5(c["res5"])
        l4 = fpn.fpn_lateral4(c["res4"]) + F.interpolate(
            l5, size=c["res4"].shape[-2:], mode="bilinear", align_corners=False
        )
        l3 = fpn.fpn_lateral3(c["res3"]) + F.interpolate(
            l4, size=c["res3"].shape[-2:], mode="bilinear", align_corners=False
        )
        p5 = F.relu(fpn.fpn_output5(l5))
        p6 = F.conv2d(p5, fpn.p6.weight, fpn.p6.bias, stride=2, padding=1)
        p7 = F.conv2d(p6, fpn.p7.weight, fpn.p7.bias, stride=2, padding=1)  # no ReLU between P6 and P7
    assert [tuple(out[f].shape[-2:]) for f in ("p3", "p4", "p5", "p6", "p7")] == [
        (13, 10),
        (7, 5),
        (4, 3),
        (2, 2),
        (1, 1),
    ]
    torch.testing.assert_close(out["p3"], F.relu(fpn.fpn_output3(l3)))
    torch.testing.assert_close(out["p4"], F.relu(fpn.fpn_output4(l4)))
    torch.testing.assert_close(out["p5"], p5)
    torch.testing.assert_close(out["p6"], p6)
    torch.testing.assert_close(out["p7"], p7)
    assert (out["p6"] < 0).any()  # P6 is not ReLU'd


def test_protonet_and_shared_head_wiring():
    torch.manual_seed(0)
    proto = ProtoNet(4, 6, 3).eval()
    x = torch.randn(1, 4, 5, 7)
    with torch.no_grad():
        y = x
        for conv in (proto.pre[0], proto.pre[2], proto.pre[4]):
            y = F.relu(conv(y))
        y = F.relu(F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False))
        y = F.relu(proto.post[2](F.relu(proto.post[0](y))))
        torch.testing.assert_close(proto(x), y)
    assert y.shape == (1, 3, 10, 14)
    head = PredictionHead(4, 6, num_anchors=3, num_classes=2, num_prototypes=5).eval()
    with torch.no_grad():
        cls, box, coef = head(x)
        t = F.relu(head.tower[0](x))
        raw_cls = head.cls(t)  # (1, 3 * 3, 5, 7): channel a * (K + 1) + c
    assert cls.shape == (1, 5 * 7 * 3, 3) and box.shape == (1, 105, 4) and coef.shape == (1, 105, 5)
    # flattened index = (row * W + col) * A + anchor
    torch.testing.assert_close(cls[0, (2 * 7 + 4) * 3 + 1], raw_cls[0, 3:6, 2, 4])
    assert coef.abs().max() <= 1.0  # tanh coefficients


def test_image_postprocessing_has_one_host_sync_and_handles_padding():
    from projects.utils.host_syncs import count_host_syncs

    g = torch.Generator().manual_seed(0)
    corner = torch.rand(300, 2, generator=g) * 0.6
    boxes = torch.cat([corner, corner + 0.3], dim=1)
    scores = torch.rand(300, 4, generator=g) * 0.4
    coeffs, protos = torch.randn(300, 3, generator=g), torch.rand(3, 8, 8, generator=g)
    # 30 x 30 image padded to 32 x 32, output 60 x 60
    inst, syncs = count_host_syncs(
        lambda: image_detections(boxes, scores, coeffs, protos, (30, 30), (32, 32), (60, 60), ImagePostprocessParams())
    )
    assert syncs.get("aten::item", 0) == 1 and not set(syncs) - {"aten::item", "aten::_local_scalar_dense"}
    idx, _, _, valid = class_fast_nms(boxes, scores, ImagePostprocessParams())
    n = int(valid.sum())
    assert len(inst) == n > 0 and inst.pred_masks.shape == (n, 60, 60)
    # boxes: normalised to the padded 32-px input, image 30 px -> factor 32 * 60 / 30 = 64 px, clamped to 60
    expected = torch.trunc((boxes[idx[:n]] * 64).clamp(0, 60))
    torch.testing.assert_close(inst.pred_boxes.tensor, expected)
