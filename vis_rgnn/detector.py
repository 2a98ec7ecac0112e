"""YOLACT-style single-frame instance segmenter (Bolya et al. 2019), the detector of RGNN-VIS (§3.6, App. A).

A protonet on one FPN level produces ``k`` prototype masks; a head shared over the FPN levels predicts per anchor
the class scores (K foreground classes + background, softmax), box deltas and ``k`` mask coefficients. A
detection's mask is ``sigmoid(prototypes @ coefficients)`` cropped to its box. Post-processing keeps every
anchor whose best foreground probability has logit >= ``SCORE_LOGIT_THRESH`` (-3.5, i.e. very low-confidence
detections are kept for the tracker, App. A.2), applies class-agnostic Fast NMS (IoU 0.7) and keeps at most
``MAX_DETECTIONS``. Class-agnostic, because each detection carries its full class-score vector to the tracker.

``ANCHOR_LAYOUT yolact`` (with the ``build_yolact_resnet_fpn_backbone`` backbone) makes the network YOLACT's own
(``vis_rgnn/yolact_anchors.py``, ``yolact_fpn.py``), so the official weights load through
``vis_rgnn/convert_yolact.py``. :meth:`YolactDetector.image_inference` is YOLACT's single-image test-time
post-processing (class-aware Fast NMS, ``vis_rgnn/yolact_postprocess.py``) used by the detectron2 image call.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.anchor_generator import build_anchor_generator
from detectron2.modeling.box_regression import Box2BoxTransform
from detectron2.modeling.matcher import Matcher
from detectron2.structures import Boxes, Instances, pairwise_iou
from torch import nn

from projects.modeling.bottom_up_tap import forward_with_bottom_up

from .box_ops import box_grid_masks, crop_masks, fast_nms_keep
from .targets import gt_masks_on_grid
from .yolact_anchors import YolactAnchorGenerator
from .yolact_heads import PredictionHead, ProtoNet
from .yolact_postprocess import ImagePostprocessParams, decode_boxes, image_detections

# its box operations and heads: box_ops.py, yolact_heads.py
__all__ = ["YolactDetector", "MASK_SCORE_PAD", "segmenter_features"]

# Score map of a padded detection slot with ``DETECTION_MASK_SCORES release`` (the release pads with -inf; a finite
# value whose exp underflows to 0 in float32 gives the same softmax and keeps products with 0 finite).
MASK_SCORE_PAD = -1e4


class YolactDetector(nn.Module):
    """The segmenter. ``forward(features, ...)`` returns losses in training and detections otherwise.

    Detections (one ``Instances`` per image, in padded-input pixel coordinates) carry ``pred_boxes`` (Boxes),
    ``class_probs`` (M, K+1; background last), ``class_logits`` (M, K+1) the raw logits they come from (zero on
    padded slots), ``scores`` (M,) best foreground probability, ``pred_classes``
    (M,), ``mask_coeffs`` (M, k) and ``pred_masks`` (M, Hp/s, Wp/s) box-cropped mask probabilities on the
    prototype grid of stride ``s = mask_stride`` -- or, with ``DETECTION_MASK_SCORES release``, the release's score maps
    (logits ``coefficients . prototypes + DETECTION_MASK_BOX_WEIGHT x box map``, :func:`box_grid_masks`; padded slots
    ``MASK_SCORE_PAD``).
    """

    @configurable
    def __init__(
        self,
        *,
        input_shape: Dict[str, ShapeSpec],
        in_features: List[str],
        proto_feature: str,
        proto_detail_feature: str = "",
        anchor_generator: nn.Module,
        num_classes: int,
        num_prototypes: int = 32,
        proto_channels: int = 256,
        head_channels: int = 256,
        iou_thresholds: Tuple[float, float] = (0.4, 0.5),
        bbox_reg_weights: Tuple[float, ...] = (10.0, 10.0, 5.0, 5.0),
        neg_pos_ratio: int = 3,
        masks_per_image: int = 100,
        pre_nms_topk: int = 200,
        score_logit_thresh: float = -3.5,
        nms_thresh: float = 0.7,
        max_detections: int = 16,
        loss_weights: Dict[str, float],
        anchor_layout: str = "detectron2",
        image_test: Optional[ImagePostprocessParams] = None,
        score_mode: str = "logit",
        box_clamp: str = "image",
        mask_scores: str = "sigmoid_crop",
        mask_box_weight: float = 10.0,
    ):
        super().__init__()
        if num_classes <= 0:
            raise ValueError(f"MODEL.NUM_CLASSES must be resolved to a positive int, got {num_classes}")
        self.in_features, self.proto_feature, self.num_classes = in_features, proto_feature, num_classes
        if anchor_layout not in ("detectron2", "yolact"):
            raise ValueError(
                f"MODEL.RGNN.DETECTOR.ANCHOR_LAYOUT must be 'detectron2' or 'yolact', got {anchor_layout!r}"
            )
        if (anchor_layout == "yolact") != isinstance(anchor_generator, YolactAnchorGenerator):
            raise ValueError("ANCHOR_LAYOUT 'yolact' needs a YolactAnchorGenerator (and only it)")
        self.anchor_layout, self.image_test = anchor_layout, image_test or ImagePostprocessParams()
        self.anchor_generator = anchor_generator
        num_anchors = anchor_generator.num_cell_anchors
        if len(set(num_anchors)) != 1:
            raise ValueError("YOLACT's shared head needs the same number of anchors on every level")
        channels = {input_shape[f].channels for f in in_features}
        if len(channels) != 1:
            raise ValueError("the shared prediction head needs equal channels on all input levels")
        self.mask_stride = input_shape[proto_feature].stride // 2
        detail_channels = 0
        if proto_detail_feature:
            detail = input_shape.get(proto_detail_feature)
            if detail is None or detail.stride != self.mask_stride:
                raise ValueError(
                    f"MODEL.RGNN.DETECTOR.PROTO_DETAIL_FEATURE {proto_detail_feature!r} must be a bottom-up output of "
                    f"the backbone (MODEL.RESNETS.OUT_FEATURES) at the prototypes' stride {self.mask_stride}; the "
                    f"backbone has {sorted(input_shape)}"
                )
            detail_channels = detail.channels
        self.proto_detail_feature = proto_detail_feature
        self.protonet = ProtoNet(input_shape[proto_feature].channels, proto_channels, num_prototypes, detail_channels)
        self.head = PredictionHead(channels.pop(), head_channels, num_anchors[0], num_classes, num_prototypes)
        self.semantic = nn.Conv2d(input_shape[proto_feature].channels, num_classes, 1)
        self.box2box = Box2BoxTransform(weights=bbox_reg_weights)
        wx, wy, ww, wh = bbox_reg_weights
        # SSD/YOLACT variances of the same decoding (only meaningful when wx == wy and ww == wh).
        self.variances = (1.0 / wx, 1.0 / ww) if (wx == wy and ww == wh) else None
        self.matcher = Matcher(list(iou_thresholds), [0, -1, 1], allow_low_quality_matches=True)
        self.neg_pos_ratio, self.masks_per_image = neg_pos_ratio, masks_per_image
        self.pre_nms_topk, self.score_thresh = pre_nms_topk, 1.0 / (1.0 + math.exp(-score_logit_thresh))
        self.nms_thresh, self.max_detections = nms_thresh, max_detections
        if score_mode not in ("logit", "log_prob"):
            raise ValueError(f"MODEL.RGNN.DETECTOR.SCORE_MODE must be 'logit' or 'log_prob', got {score_mode!r}")
        if box_clamp not in ("image", "release"):
            raise ValueError(f"MODEL.RGNN.DETECTOR.BOX_CLAMP must be 'image' or 'release', got {box_clamp!r}")
        self.score_mode, self.score_logit_thresh, self.box_clamp = score_mode, score_logit_thresh, box_clamp
        self.loss_weights = loss_weights
        if mask_scores not in ("sigmoid_crop", "release"):
            raise ValueError(
                f"MODEL.RGNN.DETECTION_MASK_SCORES must be 'sigmoid_crop' or 'release', got {mask_scores!r}"
            )
        self.mask_scores, self.mask_box_weight = mask_scores, mask_box_weight

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        d = cfg.MODEL.RGNN.DETECTOR
        if d.ANCHOR_LAYOUT == "yolact":
            a = cfg.MODEL.ANCHOR_GENERATOR
            anchor_generator = YolactAnchorGenerator(
                a.SIZES, a.ASPECT_RATIOS, square=d.SQUARE_ANCHORS, reference_size=d.ANCHOR_REFERENCE_SIZE
            )
        else:
            anchor_generator = build_anchor_generator(cfg, [input_shape[f] for f in d.IN_FEATURES])
        t = d.IMAGE_TEST
        return {
            "anchor_layout": d.ANCHOR_LAYOUT,
            "score_mode": d.SCORE_MODE,
            "box_clamp": d.BOX_CLAMP,
            "mask_scores": cfg.MODEL.RGNN.DETECTION_MASK_SCORES,
            "mask_box_weight": cfg.MODEL.RGNN.DETECTION_MASK_BOX_WEIGHT,
            "image_test": ImagePostprocessParams(
                conf_thresh=t.CONF_THRESH,
                nms_thresh=t.NMS_THRESH,
                top_k=t.TOP_K,
                max_detections=t.MAX_DETECTIONS,
                second_threshold=t.SECOND_THRESHOLD,
                mask_thresh=t.MASK_THRESH,
                crop_padding=t.CROP_PADDING,
                integer_boxes=t.INTEGER_BOXES,
            ),
            "input_shape": input_shape,
            "in_features": list(d.IN_FEATURES),
            "proto_feature": d.PROTO_FEATURE,
            "proto_detail_feature": d.PROTO_DETAIL_FEATURE,
            "anchor_generator": anchor_generator,
            "num_classes": cfg.MODEL.NUM_CLASSES,
            "num_prototypes": d.NUM_PROTOTYPES,
            "proto_channels": d.PROTO_CHANNELS,
            "head_channels": d.HEAD_CHANNELS,
            "iou_thresholds": tuple(d.IOU_THRESHOLDS),
            "bbox_reg_weights": tuple(d.BBOX_REG_WEIGHTS),
            "neg_pos_ratio": d.NEG_POS_RATIO,
            "masks_per_image": d.MASKS_PER_IMAGE,
            "pre_nms_topk": d.PRE_NMS_TOPK,
            "score_logit_thresh": d.SCORE_LOGIT_THRESH,
            "nms_thresh": d.NMS_THRESH,
            "max_detections": d.MAX_DETECTIONS,
            "loss_weights": {
                "loss_det_class": d.CLASS_LOSS_WEIGHT,
                "loss_det_box": d.BOX_LOSS_WEIGHT,
                "loss_det_mask": d.MASK_LOSS_WEIGHT,
                "loss_det_semantic": d.SEMANTIC_LOSS_WEIGHT,
            },
        }

    def forward(
        self,
        features: Dict[str, torch.Tensor],
        image_sizes: List[Tuple[int, int]],
        gt_instances: Optional[List[Instances]] = None,
        input_size: Optional[Tuple[int, int]] = None,
    ):
        """features: FPN maps of the padded batch; image_sizes: (h, w) per image before padding; input_size:
        (Hp, Wp) of the padded batch (default: the largest image size, i.e. no size divisibility), needed by
        the YOLACT anchor layout whose anchor centres are relative to the input size.

        Training (``gt_instances`` given): dict of weighted losses. Otherwise: list of detection Instances.
        """
        feats = [features[f] for f in self.in_features]
        anchors = Boxes.cat(self._anchors(feats, image_sizes, input_size))
        cls_logits, deltas, coeffs, protos = self._predict(features, feats)
        if gt_instances is not None:
            semantic = self.semantic(features[self.proto_feature])
            return self.losses(anchors, cls_logits, deltas, coeffs, protos, semantic, gt_instances)
        return [
            self.inference_single(anchors, cls_logits[i], deltas[i], coeffs[i], protos[i], image_sizes[i])
            for i in range(len(image_sizes))
        ]

    def _anchors(self, feats: List[torch.Tensor], image_sizes, input_size) -> List[Boxes]:
        if self.anchor_layout == "detectron2":
            return self.anchor_generator(feats)
        if input_size is None:
            input_size = (max(s[0] for s in image_sizes), max(s[1] for s in image_sizes))
        return self.anchor_generator(feats, tuple(input_size))

    def _predict(self, features: Dict[str, torch.Tensor], feats: List[torch.Tensor]):
        """Head outputs concatenated over levels, (B, A, K+1), (B, A, 4), (B, A, k), and prototypes (B, k, h, w)."""
        outs = [self.head(x) for x in feats]
        cls_logits, deltas, coeffs = (torch.cat([o[i] for o in outs], dim=1) for i in range(3))
        detail = features[self.proto_detail_feature] if self.proto_detail_feature else None
        return cls_logits, deltas, coeffs, self.protonet(features[self.proto_feature], detail)

    @torch.no_grad()
    def image_inference(
        self,
        features: Dict[str, torch.Tensor],
        image_sizes: List[Tuple[int, int]],
        input_size: Tuple[int, int],
        output_sizes: List[Tuple[int, int]],
    ) -> List[Instances]:
        """Single-image detections (YOLACT's test-time post-processing, ``IMAGE_TEST.*``) in detectron2's
        format: Instances of each ``output_sizes[i]`` = (H, W) with pred_boxes, scores, pred_classes (0..K-1)
        and bool pred_masks (N, H, W). ``input_size`` = (Hp, Wp) of the padded network input.

        Boxes are decoded on coordinates normalised to the input: for the YOLACT layout from its priors with
        variances 1 / BBOX_REG_WEIGHTS (exactly YOLACT's decode), otherwise with detectron2's Box2BoxTransform.
        """
        feats = [features[f] for f in self.in_features]
        cls_logits, deltas, coeffs, protos = self._predict(features, feats)
        hp, wp = input_size
        if self.anchor_layout == "yolact":
            if self.variances is None:
                raise ValueError("ANCHOR_LAYOUT yolact needs BBOX_REG_WEIGHTS (w, w, s, s)")
            priors = self.anchor_generator.normalized_priors(
                [tuple(x.shape[-2:]) for x in feats], (hp, wp), protos.device
            )
        else:
            anchors = Boxes.cat(self.anchor_generator(feats)).tensor
            scale = anchors.new_tensor([wp, hp, wp, hp])
        results = []
        for i, out_size in enumerate(output_sizes):
            if self.anchor_layout == "yolact":
                boxes = decode_boxes(deltas[i], priors, self.variances)
            else:
                boxes = self.box2box.apply_deltas(deltas[i], anchors) / scale
            probs = cls_logits[i].softmax(dim=-1)[:, : self.num_classes]  # background is the last class
            results.append(
                image_detections(
                    boxes, probs, coeffs[i], protos[i], image_sizes[i], (hp, wp), out_size, self.image_test
                )
            )
        return results

    # ----------------------------------------------------------------------------------------------- training
    def losses(
        self,
        anchors: Boxes,
        cls_logits: torch.Tensor,
        deltas: torch.Tensor,
        coeffs: torch.Tensor,
        protos: torch.Tensor,
        semantic: torch.Tensor,
        gt_instances: List[Instances],
    ) -> Dict[str, torch.Tensor]:
        """YOLACT losses: softmax CE with 3:1 online hard negative mining and smooth-L1 box loss (normalised
        by the number of positives), per-positive BCE of the assembled mask inside its ground-truth box
        (mean over sampled positives), and the auxiliary semantic-segmentation BCE on the protonet input."""
        k_bg = self.num_classes
        padded = (protos.shape[-2] * self.mask_stride, protos.shape[-1] * self.mask_stride)
        cls_terms, box_terms, mask_terms, sem_terms = [], [], [], []
        num_pos = 0
        for i, inst in enumerate(gt_instances):
            gt_boxes = inst.gt_boxes.to(anchors.device)
            if len(inst) > 0:
                matched, labels = self.matcher(pairwise_iou(gt_boxes, anchors))
            else:
                matched = torch.zeros(len(anchors), dtype=torch.long, device=anchors.device)
                labels = torch.zeros(len(anchors), dtype=torch.long, device=anchors.device)
            pos, neg = labels == 1, labels == 0
            n_pos = int(pos.sum())
            num_pos += n_pos
            target = torch.full(labels.shape, k_bg, dtype=torch.long, device=labels.device)
            if len(inst) > 0:
                target[pos] = inst.gt_classes.to(labels.device)[matched[pos]]
            ce = F.cross_entropy(cls_logits[i], target, reduction="none")
            # Hard negatives ranked by their background loss (YOLACT's OHEM).
            bg_loss = torch.where(neg, ce.detach(), torch.full_like(ce, -1.0))
            n_neg = min(int(neg.sum()), self.neg_pos_ratio * max(n_pos, 1))
            hard_neg = bg_loss.topk(n_neg).indices
            cls_terms.append(ce[pos].sum() + ce[hard_neg].sum())
            masks_t = gt_masks_on_grid(inst, padded, self.mask_stride)  # (G, h, w)
            sem_terms.append(self._semantic_loss(semantic[i], inst, masks_t))
            if n_pos == 0:
                continue
            gt_pos = gt_boxes.tensor[matched[pos]]
            box_t = self.box2box.get_deltas(anchors.tensor[pos], gt_pos)
            box_terms.append(F.smooth_l1_loss(deltas[i][pos], box_t, beta=1.0 / 9, reduction="sum"))
            sel = torch.nonzero(pos).squeeze(1)
            if len(sel) > self.masks_per_image:
                sel = sel[torch.randperm(len(sel), device=sel.device)[: self.masks_per_image]]
            logits = torch.einsum("khw,nk->nhw", protos[i], coeffs[i][sel])
            bce = F.binary_cross_entropy_with_logits(logits, masks_t[matched[sel]], reduction="none")
            gt_box = gt_boxes.tensor[matched[sel]] / self.mask_stride
            inside = crop_masks(torch.ones_like(bce), gt_box)
            mask_terms.append(((bce * inside).sum((1, 2)) / inside.sum((1, 2)).clamp(min=1.0)).mean())
        norm = max(num_pos, 1)
        # Without positives the box / mask terms are zeros that still touch their parameters (DDP-safe).
        losses = {
            "loss_det_class": torch.stack(cls_terms).sum() / norm,
            "loss_det_box": torch.stack(box_terms).sum() / norm if box_terms else deltas.sum() * 0.0,
            "loss_det_mask": torch.stack(mask_terms).mean() if mask_terms else (protos.sum() + coeffs.sum()) * 0.0,
            "loss_det_semantic": torch.stack(sem_terms).mean(),
        }
        return {k: v * self.loss_weights[k] for k, v in losses.items()}

    def _semantic_loss(self, logits: torch.Tensor, inst: Instances, masks_grid: torch.Tensor) -> torch.Tensor:
        """Per-class BCE on the protonet-input grid; logits: (K, h, w); masks_grid: (G, 2h, 2w)."""
        target = logits.new_zeros(logits.shape)
        if len(inst) > 0:
            small = F.avg_pool2d(masks_grid[:, None], 2)[:, 0] > 0.5  # grid of the semantic logits
            for cls, m in zip(inst.gt_classes.tolist(), small):
                target[cls] = torch.maximum(target[cls], m.to(target.dtype))
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="sum")
        return bce / (logits.shape[-1] * logits.shape[-2])

    # ---------------------------------------------------------------------------------------------- inference
    def inference_single(
        self,
        anchors: Boxes,
        cls_logits: torch.Tensor,
        deltas: torch.Tensor,
        coeffs: torch.Tensor,
        protos: torch.Tensor,
        image_size: Tuple[int, int],
    ) -> Instances:
        """Detections of one image, fixed-size and without host syncs: (A, K+1) logits, (A, 4) deltas, (A, k)
        coefficients, (k, h, w) prototypes.

        The ``min(PRE_NMS_TOPK, A)`` best-scoring anchors are decoded; those whose best foreground probability
        reaches the score threshold and whose clipped box is non-empty (and finite) are candidates for Fast NMS;
        the ``min(MAX_DETECTIONS, PRE_NMS_TOPK, A)`` best kept ones are returned, by decreasing score, padded
        with invalid entries. Returns Instances of that fixed length M with the fields of the class docstring
        plus ``valid`` (M,) bool. Padded entries have zero boxes, probabilities, scores and masks and must be
        skipped; ``inst[inst.valid]`` gives the compact detections (one host sync). Non-finite boxes (a diverged
        model) are treated as empty and dropped instead of stopping on a host-side check.
        """
        k = self.num_classes
        probs = cls_logits.softmax(dim=-1)
        n_top = min(self.pre_nms_topk, cls_logits.shape[0])
        if self.score_mode == "log_prob":
            # The release (RGNN._get_confident_detection_ids): max foreground logit - logsumexp, this float32
            # expression (its rounding decides near-ties), ranked by a stable sort (ties in anchor order, as its
            # nonzero + sort); a log_softmax differs in the last bits and a topk orders ties arbitrarily.
            scores = cls_logits[:, :k].max(dim=1).values - cls_logits.logsumexp(dim=1)
            top_scores, top = (x[:n_top] for x in scores.sort(descending=True, stable=True))
        else:
            scores = probs[:, :k].max(dim=1).values
            top_scores, top = scores.topk(n_top)  # sorted, decreasing
        boxes = self.box2box.apply_deltas(deltas[top], anchors.tensor[top])
        h, w = image_size
        if self.score_mode == "log_prob":
            valid = top_scores > self.score_logit_thresh
            top_scores = top_scores.exp()  # reported as probabilities in both modes
        else:
            valid = top_scores >= self.score_thresh
        if self.box_clamp == "release":  # the release's project_boxes: x1, y1 >= 0; x2 <= W - 1, y2 <= H - 1
            x1, y1 = boxes[:, 0].clamp(min=0), boxes[:, 1].clamp(min=0)
            boxes = torch.stack([x1, y1, boxes[:, 2].clamp(max=w - 1), boxes[:, 3].clamp(max=h - 1)], dim=1)
        else:  # clamped to the image; empty boxes are dropped
            boxes = torch.stack(
                [boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h), boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)],
                dim=1,
            )
            valid = valid & ((boxes[:, 2:] - boxes[:, :2]) > 1e-3).all(dim=1)
        valid = valid & torch.isfinite(boxes).all(dim=1)
        keep = fast_nms_keep(boxes, valid, self.nms_thresh)
        # kept first, in rank order (a stable sort: equal scores keep their order, as the release's [:16])
        sel = (~keep).to(torch.uint8).sort(stable=True).indices[: self.max_detections]
        valid = keep[sel]
        anchor = top[sel]
        boxes = torch.where(valid[:, None], boxes[sel], 0.0)
        det_probs = torch.where(valid[:, None], probs[anchor], 0.0)
        det_coeffs = torch.where(valid[:, None], coeffs[anchor], 0.0)
        raw = torch.einsum("khw,nk->nhw", protos, det_coeffs)
        padded = (protos.shape[-2] * self.mask_stride, protos.shape[-1] * self.mask_stride)
        out = Instances(padded)
        out.pred_boxes = Boxes(boxes)
        out.class_probs = det_probs
        out.class_logits = torch.where(valid[:, None], cls_logits[anchor], 0.0)  # the release's GNN input
        out.scores = torch.where(valid, top_scores[sel], 0.0)
        out.pred_classes = det_probs[:, :k].argmax(dim=1)
        out.mask_coeffs = det_coeffs
        if self.mask_scores == "release":  # RGNN.filter_detections: raw logits + weight x box_to_seg box map
            box = box_grid_masks(boxes, tuple(raw.shape[-2:]), self.mask_stride)
            out.pred_masks = torch.where(valid[:, None, None], raw + self.mask_box_weight * box, MASK_SCORE_PAD)
        else:
            out.pred_masks = crop_masks(torch.sigmoid(raw), boxes / self.mask_stride) * valid[:, None, None]
        out.valid = valid
        return out


def segmenter_features(backbone: nn.Module, detector: YolactDetector, x: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The detector's input maps for the input batch ``x``: the backbone's outputs, plus the bottom-up level
    ``PROTO_DETAIL_FEATURE`` when set (read in the same pass)."""
    if not detector.proto_detail_feature:
        return backbone(x)
    outputs, bottom_up = forward_with_bottom_up(backbone, x)
    return {**outputs, detector.proto_detail_feature: bottom_up[detector.proto_detail_feature]}
