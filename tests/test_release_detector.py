"""Facts of the authors' RGNN-VIS release's YOLACT variant (rgnnvis/models/yolact/yolact.py, rgnnvis/models/rgnn.py
``_get_confident_detection_ids``, rgnnvis/models/nms.py ``cc_fast_nms``) as configured by
configs/vis_rgnn/release_R50_ytvis19.yaml: anchor layout, class layout, detection filter and cross-class Fast NMS."""

import math

import pytest
import torch
from detectron2.config import get_cfg
from detectron2.structures import Boxes

from tests.rgnn_fixtures import tiny_release_detector
from vis_rgnn.config import add_rgnn_config
from vis_rgnn.convert_release import RELEASE_CONFIG
from vis_rgnn.yolact_anchors import YolactAnchorGenerator

torch.set_num_threads(1)
K = 40  # foreground classes; the release's 41-way softmax with background


def release_cfg():
    cfg = get_cfg()
    add_rgnn_config(cfg)
    cfg.merge_from_file(RELEASE_CONFIG)
    return cfg


def release_anchor_generator(cfg=None):
    cfg = cfg or release_cfg()
    d, a = cfg.MODEL.RGNN.DETECTOR, cfg.MODEL.ANCHOR_GENERATOR
    return YolactAnchorGenerator(
        a.SIZES, a.ASPECT_RATIOS, square=d.SQUARE_ANCHORS, reference_size=d.ANCHOR_REFERENCE_SIZE
    )


def test_release_config_facts():
    cfg = release_cfg()
    r = cfg.MODEL.RGNN
    assert cfg.MODEL.NUM_CLASSES == K and r.TEST_RESIZE == [480, 864] and r.NETWORK_FORMAT == "RGB"
    # ToTensor + ImageNet normalisation == (x - 255 mean) / (255 std); BGR order here, flipped to RGB
    imagenet_mean, imagenet_std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    assert cfg.MODEL.PIXEL_MEAN == pytest.approx([255 * m for m in reversed(imagenet_mean)])
    assert cfg.MODEL.PIXEL_STD == pytest.approx([255 * s for s in reversed(imagenet_std)])
    d = r.DETECTOR
    assert (d.SCORE_MODE, d.SCORE_LOGIT_THRESH, d.NMS_THRESH, d.PRE_NMS_TOPK, d.MAX_DETECTIONS) == (
        "log_prob",
        -3.5,
        0.7,
        200,
        16,
    )
    assert tuple(d.BBOX_REG_WEIGHTS) == (10.0, 10.0, 5.0, 5.0)  # variances 0.1, 0.2


def test_release_anchor_layout():
    """3 anchors per location, location-major (row j, column i, then ratio 1, 1/2, 2 divided by 1.8), width
    24 sqrt(ar) / 500 and height 24 / sqrt(ar) / 500 of the input, centres ((i + .5) / w, (j + .5) / h)."""
    gen = release_anchor_generator()
    assert gen.num_cell_anchors == [3] * 5
    grid = (2, 3)
    p = gen.level_priors(0, grid, (480, 864))
    assert p.shape == (2 * 3 * 3, 4)
    for j in range(2):
        for i in range(3):
            for a, ar in enumerate((1.0, 0.5, 2.0)):
                ar = math.sqrt(ar / 1.8)
                want = torch.tensor([(i + 0.5) / 3, (j + 0.5) / 2, 24 * ar / 500, 24 / ar / 500])
                torch.testing.assert_close(p[(j * 3 + i) * 3 + a], want, rtol=0, atol=1e-7)
    # relative to 500, not to the input: the same normalised priors for any input size
    torch.testing.assert_close(gen.level_priors(4, grid, (480, 864)), gen.level_priors(4, grid, (301, 517)))
    # in pixels at 480 x 864 the anchors are not square
    xyxy = gen([torch.zeros(1, 1, 2, 3)] + [torch.zeros(1, 1, 1, 1)] * 4, (480, 864))[0].tensor
    w, h = xyxy[0, 2] - xyxy[0, 0], xyxy[0, 3] - xyxy[0, 1]
    torch.testing.assert_close(w / h, torch.tensor((864 / 480) / 1.8))
    # the default (reference 0) is unchanged: sizes are pixels of the input
    default = YolactAnchorGenerator([[24]], [[1.0]], square=True)
    torch.testing.assert_close(default.level_priors(0, (1, 1), (480, 864))[0, 2:], torch.tensor([24 / 864, 24 / 480]))


def _detector(score_mode="log_prob", box_clamp="release", max_detections=16):
    return tiny_release_detector(
        release_anchor_generator(),
        K,
        score_logit_thresh=-3.5,
        nms_thresh=0.7,
        pre_nms_topk=200,
        max_detections=max_detections,
        score_mode=score_mode,
        box_clamp=box_clamp,
    )


def _logits(log_probs_fg):
    """(A,) wanted max foreground log-probabilities -> (A, K + 1) logits, background last, best class A % K."""
    a = log_probs_fg.shape[0]
    p = log_probs_fg.exp()
    rest = (1 - p) / K  # the remaining mass spread over the other classes and the background
    probs = rest[:, None].expand(a, K + 1).clone()
    probs[torch.arange(a), torch.arange(a) % K] = p
    return probs.log()


def _run(det, boxes, log_probs, image_size=(480, 864)):
    a = boxes.shape[0]
    protos = torch.rand(4, 120, 216)
    out = det.inference_single(
        Boxes(boxes), _logits(log_probs), torch.zeros(a, 4), torch.zeros(a, 4), protos, image_size
    )
    return out


def test_release_detection_filter_is_on_log_probabilities():
    """Kept when max foreground log-probability > -3.5 (p > 0.0302); the log-odds rule would keep p = 0.0297."""
    det = _detector()
    boxes = torch.tensor([[0.0, 0, 10, 10], [100, 100, 110, 110], [200, 200, 210, 210]])
    lp = torch.tensor([-3.4, math.log(0.0297), -3.6])
    out = _run(det, boxes, lp)
    assert out.valid.tolist()[:3] == [True, False, False]
    torch.testing.assert_close(out.scores[0], torch.tensor(math.exp(-3.4)), rtol=1e-4, atol=0)
    logit_mode = _run(_detector(score_mode="logit", box_clamp="image"), boxes, lp)
    assert logit_mode.valid.tolist()[:3] == [True, True, False]


def test_release_cross_class_fast_nms_and_cap():
    """Cross-class: boxes of different classes suppress each other. Fast: B (suppressed by A) still suppresses C."""
    det = _detector()
    a = [0.0, 0.0, 100.0, 100.0]
    b = [0.0, 0.0, 100.0, 115.0]  # IoU(A, B) = 0.87
    c = [0.0, 13.0, 100.0, 128.0]  # IoU(B, C) = 0.79, IoU(A, C) = 0.66
    far = [300.0, 300.0, 320.0, 320.0]
    boxes = torch.tensor([c, far, a, b])
    lp = torch.tensor([-1.0, -2.0, -0.1, -0.5])  # A > B > C > far; A and B have different best classes
    out = _run(det, boxes, lp)
    kept = out.pred_boxes.tensor[out.valid]
    torch.testing.assert_close(kept, torch.tensor([a, far]))
    # at most 16 of many disjoint detections, the best first
    n = 40
    boxes = torch.tensor([[20.0 * i, 0, 20.0 * i + 10, 10] for i in range(n)])
    lp = -torch.linspace(0.1, 3.0, n)
    out = _run(det, boxes, lp)
    assert int(out.valid.sum()) == 16 and len(out) == 16
    torch.testing.assert_close(out.pred_boxes.tensor[:, 0], boxes[:16, 0])


def test_release_box_clamp():
    """project_boxes: x1, y1 clamped at 0, x2 at W - 1, y2 at H - 1; small boxes are not dropped."""
    det = _detector()
    boxes = torch.tensor([[-5.0, -3.0, 900.0, 500.0], [10.0, 10.0, 10.0005, 10.0005]])
    out = _run(det, boxes, torch.tensor([-0.1, -0.2]))
    torch.testing.assert_close(out.pred_boxes.tensor[0], torch.tensor([0.0, 0.0, 863.0, 479.0]))
    assert out.valid[:2].tolist() == [True, True]
    image = _run(_detector(score_mode="log_prob", box_clamp="image"), boxes, torch.tensor([-0.1, -0.2]))
    torch.testing.assert_close(image.pred_boxes.tensor[0], torch.tensor([0.0, 0.0, 864.0, 480.0]))
    assert image.valid[:2].tolist() == [True, False]


def test_bad_switch_values_are_errors():
    with pytest.raises(ValueError, match="SCORE_MODE"):
        _detector(score_mode="prob")
    with pytest.raises(ValueError, match="BOX_CLAMP"):
        _detector(box_clamp="none")
    with pytest.raises(ValueError, match="ANCHOR_REFERENCE_SIZE"):
        YolactAnchorGenerator([[24]], [[1.0]], reference_size=-1)


def test_release_score_expression_and_tie_order():
    """The release ranks by max foreground logit - logsumexp in float32 (RGNN._get_confident_detection_ids) and
    its ``[:16]`` keeps the sorted order: equal scores stay in anchor order, also at the cap; the reported score
    is exactly exp of that expression (a log_softmax differs in the last bits)."""
    det = _detector()
    n = 60
    g = torch.Generator().manual_seed(0)
    boxes = torch.tensor(
        [[20.0 * (i % 40), 15.0 * (i // 40), 20.0 * (i % 40) + 10, 15.0 * (i // 40) + 10] for i in range(n)]
    )
    logits = torch.randn(n, K + 1, generator=g) * 3 + 8
    logits[::3] = logits[0]  # 20 exact ties, the best scores of all
    logits[0, 0] += 30.0
    logits[::3, 0] = logits[0, 0]
    out = det.inference_single(
        Boxes(boxes), logits, torch.zeros(n, 4), torch.zeros(n, 4), torch.rand(4, 120, 216), (480, 864)
    )
    assert int(out.valid.sum()) == 16
    torch.testing.assert_close(out.pred_boxes.tensor, boxes[0:48:3])  # the first 16 tied anchors, in anchor order
    want = (logits[0, :K].max() - logits[0].logsumexp(0)).exp()
    assert torch.equal(out.scores, want.expand(16))
    assert torch.equal(out.class_logits, logits[0:48:3])
