"""VisSTG meta-architecture: joint detection, segmentation and tracking on a spatial-temporal graph (§3).

Training (§3.6) takes a (reference k, target t) frame pair per video: GT boxes of frame k give the graph's
reference nodes, the heads run on the fused target features F̂_t, and the loss is eq. (7)
λ1 L_det + λ2 L_mask + λ3 L_edge, with L_mask applied to θ_t and θ_warp on frame t and to θ_k on frame k.
Inference is online (:func:`projects.modeling.online.run_online_inference` drives :meth:`VisSTG.step`):
frame t is the target and frame t-1's detections plus the occlusion memory are the reference instances; the
first frame (or a frame after a change of input size) uses the plain heads, without graph or warp.
:meth:`VisSTG.finalize_video` sets the video-level track scores (``TRACK.VIDEO_SCORE``).
``INFERENCE.BASELINE`` turns the same weights into the trivial baselines reported in ``vis_stg/README.md``
(plain heads on every frame, no linking or box-IoU linking), and ``TRACK.JOINT_EMBEDDING`` trains the
Table-2 embedding head next to the edge classifier (on detached features) so that the association ablation
is an eval-time switch. The other Table-2 rows: ``GRAPH.FUSION_TYPE concat`` (:mod:`.concat_fusion`) and
``TRACK.ASSOCIATION offset`` (:mod:`.offset_head`, CenterTrack-style); the graph is built only when it is used
(relation fusion or edge association).

Shapes: B frame pairs in training (images stacked as [k-frames, t-frames]), G GT objects, L FPN levels with
(B, D, H_l, W_l) features; online: N reference instances, M = ``INFERENCE.MAX_DETECTIONS`` detection slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode, configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone, build_backbone
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn
from torchvision.ops import box_iou

from projects.modeling.online import run_online_inference

from .concat_fusion import ConcatFusion
from .detection_head import CenterNetHead, Detections
from .embedding_head import EmbeddingHead
from .graph import GraphEdges, SpatialTemporalGraph
from .init_summary import install_init_summary
from .kernel_warp import KernelWarp
from .losses import dice_loss, graph_anchor
from .mask_head import Controller, DynamicMaskHead, MaskBranch, downsample_gt_masks
from .offset_head import OffsetHead
from .sync_free import EXACT, gather_at_cells_static, greedy_match_fixed_point
from .targets import CenterTargets, assign_centers, expand_positives, gather_at_cells
from .tracker import EdgeClassifier, OnlineTracker, ReferenceSet, VideoState

__all__ = ["VisSTG"]


@META_ARCH_REGISTRY.register()
class VisSTG(nn.Module):
    """Backbone-FPN → spatial-temporal graph (§3.2) → CenterNet (§3.3) + CondInst with kernel warping (§3.4)
    → edge-feature tracking (§3.5). Configured by ``cfg.MODEL.VIS_STG`` (see ``vis_stg/config.py``)."""

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        graph: Optional[SpatialTemporalGraph],
        det_head: CenterNetHead,
        mask_branch: MaskBranch,
        mask_head: DynamicMaskHead,
        controller: Controller,
        kernel_warp: Optional[KernelWarp],
        edge_classifier: Optional[EdgeClassifier],
        embed_head: Optional[EmbeddingHead],
        tracker: OnlineTracker,
        concat_fusion: Optional[ConcatFusion] = None,
        offset_head: Optional[OffsetHead] = None,
        num_classes: int,
        in_features: Sequence[str],
        sizes_of_interest: Sequence[float],
        level_assignment: str = "fcos",
        size_divisibility: int = 0,
        fusion: bool = True,
        fusion_type: str = "relation",
        association: str = "edge",
        joint_embedding: bool = False,
        match_thresh: float = 0.5,
        offset_min_iou: float = 0.5,
        video_score: str = "mean",
        loss_weights: Tuple[float, float, float] = (1.0, 1.0, 1.0),
        det_cfg: CfgNode,
        track_cfg: CfgNode,
        inference_cfg: CfgNode,
        mask_pos_radius: int = 1,
        mask_out_stride: int = 4,
        fuse_test: bool = True,
        mask_threshold: float = 0.5,
        max_tracks: int = 100,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
    ):
        """Modules are built by :meth:`from_config` from ``cfg.MODEL.VIS_STG``; ``det_cfg`` / ``track_cfg`` /
        ``inference_cfg`` are its ``DET`` / ``TRACK`` / ``INFERENCE`` nodes (loss and inference settings read in
        several places). ``edge_classifier`` / ``embed_head`` / ``offset_head`` exist when that association is
        trained, ``graph`` when it is used (relation fusion or edge association), ``concat_fusion`` for the
        "Concat" fusion."""
        super().__init__()
        self.num_classes = int(num_classes)
        if self.num_classes <= 0:
            raise ValueError(
                f"MODEL.NUM_CLASSES must be resolved to a positive number of classes before "
                f"building VisSTG (got {self.num_classes}); train_net.py does this from the dataset"
            )
        self.backbone = backbone  # COCO-pretrained when MODEL.WEIGHTS says so (README "Initialisation")
        install_init_summary(self)  # one log line after loading weights: what was loaded, what stays random
        shapes = self.backbone.output_shape()
        self.in_features = list(in_features)
        missing = [f for f in self.in_features if f not in shapes]
        if missing:
            raise ValueError(f"VIS_STG.IN_FEATURES {missing} not produced by the backbone ({sorted(shapes)})")
        self.strides = [shapes[f].stride for f in self.in_features]
        self.sizes_of_interest = list(sizes_of_interest)
        self.level_assignment = level_assignment
        # Relative-coordinate normaliser per level (CondInst): the level's upper size bound.
        bounds = self.sizes_of_interest
        self.coord_norm = bounds + [2.0 * bounds[-1]] if bounds else [8.0 * self.strides[0]]
        self.size_divisibility = size_divisibility or self.backbone.size_divisibility

        self.fusion = fusion
        self.fusion_type = fusion_type
        if self.fusion_type not in ("relation", "concat"):
            raise ValueError(f"VIS_STG.GRAPH.FUSION_TYPE must be 'relation' or 'concat', got {self.fusion_type!r}")
        self.relation_fusion = self.fusion and self.fusion_type == "relation"
        if self.fusion and self.fusion_type == "concat" and concat_fusion is None:
            raise ValueError("GRAPH.FUSION_TYPE 'concat' needs a concat_fusion module")
        self.concat_fusion = concat_fusion if self.fusion and self.fusion_type == "concat" else None
        self.graph, self.det_head, self.mask_branch, self.mask_head = graph, det_head, mask_branch, mask_head
        self.controller, self.kernel_warp = controller, kernel_warp

        self.association = association
        if self.association not in ("edge", "embedding", "offset"):
            raise ValueError(
                f"VIS_STG.TRACK.ASSOCIATION must be 'edge', 'embedding' or 'offset', got {self.association!r}"
            )
        # TRACK.JOINT_EMBEDDING: both heads are trained (the embedding head on detached features) and
        # ASSOCIATION only picks the one used at test time.
        self.joint_embedding = bool(joint_embedding)
        self.train_edge = self.association == "edge" or self.joint_embedding
        self.train_embedding = self.association == "embedding" or self.joint_embedding
        if self.train_edge:
            if edge_classifier is None:
                raise ValueError("edge association needs an edge_classifier")
            self.edge_classifier = edge_classifier
        if self.train_embedding:
            if embed_head is None:
                raise ValueError("embedding association needs an embed_head")
            self.embed_head = embed_head
        self.offset_head = None
        if self.association == "offset":
            if offset_head is None:
                raise ValueError("offset association needs an offset_head")
            self.offset_head = offset_head
        if (self.relation_fusion or self.train_edge) and self.graph is None:
            raise ValueError("relation fusion and edge association need the graph")
        self.offset_min_iou = offset_min_iou
        self.tracker = tracker
        self.match_thresh = match_thresh
        self.video_score = video_score
        if self.video_score not in ("mean", "coverage"):
            raise ValueError(f"VIS_STG.TRACK.VIDEO_SCORE must be 'mean' or 'coverage', got {self.video_score!r}")

        self.loss_weights = tuple(loss_weights)
        self.det_cfg, self.track_cfg, self.inference_cfg = det_cfg, track_cfg, inference_cfg
        self.mask_pos_radius = mask_pos_radius
        self.mask_out_stride = mask_out_stride
        self.fuse_test = fuse_test
        if self.inference_cfg.BASELINE not in ("", "per_frame", "iou"):
            raise ValueError(
                f"VIS_STG.INFERENCE.BASELINE must be '', 'per_frame' or 'iou', got {self.inference_cfg.BASELINE!r}"
            )
        self.mask_threshold = mask_threshold
        self.max_tracks = max_tracks

        # Per-level constants on the device (no tensor built from a list on every call).
        self.register_buffer("level_strides", torch.tensor(self.strides, dtype=torch.float32), False)
        self.register_buffer("level_coord_norm", torch.tensor(self.coord_norm, dtype=torch.float32), False)
        self.register_buffer("pixel_mean", torch.tensor(list(pixel_mean)).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(list(pixel_std)).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> Dict[str, Any]:
        c = cfg.MODEL.VIS_STG
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        in_features = list(c.IN_FEATURES)
        missing = [f for f in in_features if f not in shapes]
        if missing:
            raise ValueError(f"VIS_STG.IN_FEATURES {missing} not produced by the backbone ({sorted(shapes)})")
        strides = [shapes[f].stride for f in in_features]
        dim = shapes[in_features[0]].channels
        if any(shapes[f].channels != dim for f in in_features):
            raise ValueError("all VIS_STG.IN_FEATURES must have the same number of channels")
        num_classes = int(cfg.MODEL.NUM_CLASSES)
        g, m, w, t = c.GRAPH, c.MASK, c.WARP, c.TRACK
        mask_head = DynamicMaskHead(m.BRANCH_CHANNELS, m.HEAD_CHANNELS, m.HEAD_NUM_LAYERS, strides[0], m.OUT_STRIDE)
        trains_edge = t.ASSOCIATION == "edge" or bool(t.JOINT_EMBEDDING)
        trains_embedding = t.ASSOCIATION == "embedding" or bool(t.JOINT_EMBEDDING)
        uses_graph = (g.FUSION and g.FUSION_TYPE == "relation") or trains_edge
        # The graph is constructed even when unused (then dropped) and the Table-2 modules last, so that for a
        # given SEED every other module starts from the same weights whatever the ablation switches say.
        graph = SpatialTemporalGraph(
            dim,
            strides,
            g.WINDOW_SIZES,
            g.HIDDEN_DIM,
            g.NUM_ITERS,
            g.AGGREGATION,
            g.POOLER_RESOLUTION,
            g.POOLER_SAMPLING_RATIO,
            g.NODE_POOL,
        )
        return {
            "backbone": backbone,
            "graph": graph if uses_graph else None,
            "det_head": CenterNetHead(dim, max(num_classes, 1), c.DET.NUM_CONVS, c.DET.CONV_DIM, c.DET.PRIOR_PROB),
            "mask_branch": MaskBranch(dim, m.BRANCH_CHANNELS, m.BRANCH_NUM_CONVS, m.BRANCH_CONV_DIM),
            "mask_head": mask_head,
            "controller": Controller(dim, mask_head.num_params, m.CONTROLLER_NUM_CONVS, m.CONTROLLER_CONV_DIM),
            "kernel_warp": KernelWarp(
                dim, mask_head.num_params, w.NUM_CONVS, w.CONV_DIM, w.KERNEL_SIZE, w.DEPTHWISE, w.IMPL
            )
            if w.ENABLED
            else None,
            "edge_classifier": EdgeClassifier(dim, t.CLASSIFIER_HIDDEN_DIM) if trains_edge else None,
            "embed_head": EmbeddingHead(dim, t.EMBED_DIM, t.EMBED_NUM_CONVS, c.DET.CONV_DIM)
            if trains_embedding
            else None,
            "tracker": OnlineTracker(t.MEMORY_FRAMES, t.PRUNE_CLASS_MISMATCH, t.REF_SCORE_THRESH),
            "concat_fusion": ConcatFusion(dim, g.HIDDEN_DIM) if g.FUSION and g.FUSION_TYPE == "concat" else None,
            "offset_head": OffsetHead(dim, t.OFFSET_NUM_CONVS, c.DET.CONV_DIM) if t.ASSOCIATION == "offset" else None,
            "num_classes": num_classes,
            "in_features": in_features,
            "sizes_of_interest": list(c.SIZES_OF_INTEREST),
            "level_assignment": c.LEVEL_ASSIGNMENT,
            "size_divisibility": c.SIZE_DIVISIBILITY,
            "fusion": g.FUSION,
            "fusion_type": g.FUSION_TYPE,
            "association": t.ASSOCIATION,
            "joint_embedding": t.JOINT_EMBEDDING,
            "match_thresh": t.MATCH_THRESH,
            "offset_min_iou": t.OFFSET_MIN_IOU,
            "video_score": t.VIDEO_SCORE,
            "loss_weights": (c.LOSS_WEIGHT_DET, c.LOSS_WEIGHT_MASK, c.LOSS_WEIGHT_EDGE),
            "det_cfg": c.DET.clone(),
            "track_cfg": t.clone(),
            "inference_cfg": c.INFERENCE.clone(),
            "mask_pos_radius": m.POS_RADIUS,
            "mask_out_stride": m.OUT_STRIDE,
            "fuse_test": m.FUSE_TEST,
            "mask_threshold": cfg.TEST.VIDEO.MASK_THRESHOLD,
            "max_tracks": cfg.TEST.VIDEO.MAX_TRACKS,
            "pixel_mean": tuple(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": tuple(cfg.MODEL.PIXEL_STD),
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # ------------------------------------------------------------------------------------------------ common
    def preprocess(self, images: Sequence[torch.Tensor]) -> ImageList:
        """uint8 (3, h, w) images in INPUT.FORMAT -> normalised, padded ImageList."""
        images = [(x.to(self.device).float() - self.pixel_mean) / self.pixel_std for x in images]
        return ImageList.from_tensors(images, self.size_divisibility)

    def extract_features(self, images: torch.Tensor) -> List[torch.Tensor]:
        features = self.backbone(images)
        return [features[f] for f in self.in_features]

    def run_graph(
        self,
        ref_nodes: List[torch.Tensor],
        ref_boxes: torch.Tensor,
        ref_batch: torch.Tensor,
        features_t: List[torch.Tensor],
    ) -> Tuple[List[torch.Tensor], List[GraphEdges]]:
        """§3.2: fuse F_t with the reference instances; returns the heads' input (F̂_t, or F_t when the
        relation fusion is off) and the final edges of every level."""
        centers = (ref_boxes[:, :2] + ref_boxes[:, 2:]) / 2
        fused, edges = self.graph(ref_nodes, centers, ref_batch, features_t)
        return (fused if self.relation_fusion else list(features_t)), edges

    def predict_masks(
        self,
        mask_feats: torch.Tensor,
        kernels: torch.Tensor,
        level: torch.Tensor,
        cells: torch.Tensor,
        batch_idx: torch.Tensor,
        kernel_level: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Eq. (4)/(5) for kernels applied at (level, cell) (P,): mask logits (P, H / OUT_STRIDE, W / OUT_STRIDE).
        Relative coordinates are divided by the normaliser of ``kernel_level`` (P,), the level each kernel was
        produced at (default ``level``)."""
        strides = self.level_strides[level]
        locations = (cells.float() + 0.5) * strides[:, None]
        norm = self.level_coord_norm[level if kernel_level is None else kernel_level]
        return self.mask_head(mask_feats, kernels, locations, batch_idx, norm)

    # ---------------------------------------------------------------------------------------------- training
    def forward(self, batched_inputs: List[Dict[str, Any]]):
        """Training: dict of losses (eq. (7)). Eval: one ``run_online_inference`` result per video."""
        if not self.training:
            return [run_online_inference(self, video, max_tracks=self.max_tracks) for video in batched_inputs]
        for x in batched_inputs:
            if len(x["image"]) != 2:
                raise ValueError(f"VisSTG trains on frame pairs (INPUT.SAMPLING_FRAME_NUM 2), got {len(x['image'])}")
        b = len(batched_inputs)
        images = self.preprocess([x["image"][0] for x in batched_inputs] + [x["image"][1] for x in batched_inputs])
        features = self.extract_features(images.tensor)
        feats_k, feats_t = [f[:b] for f in features], [f[b:] for f in features]
        shapes = [tuple(f.shape[-2:]) for f in features]
        inst_k = [x["instances"][0].to(self.device) for x in batched_inputs]
        inst_t = [x["instances"][1].to(self.device) for x in batched_inputs]
        assign = dict(
            shapes=shapes,
            strides=self.strides,
            sizes_of_interest=self.sizes_of_interest,
            level_assignment=self.level_assignment,
            num_classes=self.num_classes,
            min_overlap=self.det_cfg.MIN_OVERLAP,
        )
        targets_k, targets_t = assign_centers(inst_k, **assign), assign_centers(inst_t, **assign)

        # §3.2: the GT boxes of frame k are the reference nodes (same order as targets_k).
        heads_in, edges = list(feats_t), None
        if self.graph is not None:
            ref_boxes = [x.gt_boxes.tensor for x in inst_k]
            ref_nodes = self.graph.encode_nodes(feats_k, ref_boxes)
            heads_in, edges = self.run_graph(ref_nodes, torch.cat(ref_boxes), targets_k.batch_idx, feats_t)
        if self.concat_fusion is not None:  # Table 2 "Concat": frame k plays F_{t-1}
            heads_in = self.concat_fusion(feats_t, feats_k)

        det_out_t = self.det_head(heads_in)
        losses = self._detection_losses(heads_in, targets_t, det_out_t)
        if self.det_cfg.REF_FRAME_LOSS:
            losses.update({k + "_ref": v for k, v in self._detection_losses(feats_k, targets_k).items()})
        padded = tuple(images.tensor.shape[-2:])
        losses.update(
            self._segmentation_losses(heads_in, feats_k, feats_t, inst_k, inst_t, targets_k, targets_t, padded, shapes)
        )
        losses.update(self._association_losses(heads_in, feats_k, edges, targets_k, targets_t, shapes, det_out_t[0]))
        return losses

    def _detection_losses(
        self, features: List[torch.Tensor], targets: CenterTargets, det_out: Optional[Tuple] = None
    ) -> Dict[str, torch.Tensor]:
        """λ1 · eq. (3), reported per term; ``det_out``: the head's outputs on ``features`` if already computed."""
        d, weight = self.det_cfg, self.loss_weights[0]
        raw = CenterNetHead.losses(*(det_out or self.det_head(features)), targets, d.FOCAL_ALPHA, d.FOCAL_BETA)
        return {
            "loss_center": weight * raw["loss_center"],
            "loss_size": weight * d.SIZE_WEIGHT * raw["loss_size"],
            "loss_offset": weight * d.OFFSET_WEIGHT * raw["loss_offset"],
        }

    def _segmentation_losses(
        self,
        heads_in: List[torch.Tensor],
        feats_k: List[torch.Tensor],
        feats_t: List[torch.Tensor],
        inst_k: List[Instances],
        inst_t: List[Instances],
        targets_k: CenterTargets,
        targets_t: CenterTargets,
        padded: Tuple[int, int],
        shapes: Sequence[Tuple[int, int]],
    ) -> Dict[str, torch.Tensor]:
        """λ2 · L_mask (§3.4, §3.6): θ_t from F̂_t and θ_warp = warp(θ_k) on frame t, θ_k on frame k.

        θ_k comes from the plain F_k here, while at test time frame t-1's kernels come from its fused F̂_{t-1}:
        a frame pair has no frame before k to fuse F_k with (the paper trains on pairs). F̂ = F + messages with
        the message MLP's last layer zero-initialised, so the two start equal and the controller sees both
        kinds of input in training (plain on frame k, fused on frame t)."""
        weight = self.loss_weights[1]
        gt_masks_t = torch.cat(downsample_gt_masks(inst_t, padded, self.mask_out_stride))
        gt_masks_k = torch.cat(downsample_gt_masks(inst_k, padded, self.mask_out_stride))
        thetas_t, thetas_k = self.controller(heads_in), self.controller(feats_k)
        mask_feats_t, mask_feats_k = self.mask_branch(heads_in[0]), self.mask_branch(feats_k[0])
        losses = {"loss_mask": weight * self._mask_loss(thetas_t, mask_feats_t, targets_t, gt_masks_t, shapes)}
        if self.kernel_warp is not None:
            thetas_w = self.kernel_warp.warp_levels(thetas_k, feats_k, feats_t)
            losses["loss_mask_warp"] = weight * self._mask_loss(thetas_w, mask_feats_t, targets_t, gt_masks_t, shapes)
        losses["loss_mask_ref"] = weight * self._mask_loss(thetas_k, mask_feats_k, targets_k, gt_masks_k, shapes)
        return losses

    def _association_losses(
        self,
        heads_in: List[torch.Tensor],
        feats_k: List[torch.Tensor],
        edges: Optional[List[GraphEdges]],
        targets_k: CenterTargets,
        targets_t: CenterTargets,
        shapes: Sequence[Tuple[int, int]],
        heatmaps_t: List[torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        """λ3 · L_edge (eq. (6)), and/or the embedding baseline's cross-entropy (on detached features when it
        is trained next to the edge classifier, ``TRACK.JOINT_EMBEDDING``), or the offset baseline's L1."""
        weight = self.loss_weights[2]
        losses = {}
        if self.train_edge:
            tc = self.track_cfg
            losses["loss_edge"] = weight * self.edge_classifier.losses(
                edges,
                targets_k.ids,
                targets_k.classes,
                targets_k.batch_idx,
                targets_t,
                shapes,
                self.strides,
                heatmaps_t,
                self.num_classes,
                tc.TRAIN_EDGE_SET,
                tc.TRAIN_SCORE_THRESH,
                tc.TRAIN_MATCH_RADIUS,
                self.tracker.prune_class_mismatch,
            )
        if self.train_embedding:
            if self.joint_embedding:
                heads_in, feats_k = [f.detach() for f in heads_in], [f.detach() for f in feats_k]
            emb_t, emb_k = self.embed_head(heads_in), self.embed_head(feats_k)
            losses["loss_embed"] = weight * EmbeddingHead.losses(
                gather_at_cells(emb_t, targets_t.level, targets_t.batch_idx, targets_t.cells),
                targets_t.batch_idx,
                targets_t.ids,
                gather_at_cells(emb_k, targets_k.level, targets_k.batch_idx, targets_k.cells),
                targets_k.batch_idx,
                targets_k.ids,
            )
            if len(targets_t) == 0:  # no target instance: keep the embedding head in the graph (DDP)
                losses["loss_embed"] = losses["loss_embed"] + graph_anchor(*emb_t, *emb_k)
        if self.offset_head is not None:
            offset_maps = self.offset_head(heads_in, feats_k)
            losses["loss_track_offset"] = weight * OffsetHead.losses(
                offset_maps, targets_t, targets_k, self.level_strides
            )
        return losses

    def _mask_loss(
        self,
        thetas: List[torch.Tensor],
        mask_feats: torch.Tensor,
        targets: CenterTargets,
        gt_masks: torch.Tensor,
        shapes: Sequence[Tuple[int, int]],
    ) -> torch.Tensor:
        """Mean dice loss of the masks decoded by the kernels at (and around) every GT centre cell."""
        idx, cells = expand_positives(targets, self.mask_pos_radius, shapes)
        if idx.numel() == 0:
            return sum(t.sum() for t in thetas) * 0.0 + mask_feats.sum() * 0.0
        level, batch_idx = targets.level[idx], targets.batch_idx[idx]
        kernels = gather_at_cells(thetas, level, batch_idx, cells)
        logits = self.predict_masks(mask_feats, kernels, level, cells, batch_idx)
        return dice_loss(logits, gt_masks[idx]).mean()

    # --------------------------------------------------------------------------------------------- inference
    def init_video_state(self) -> VideoState:
        return VideoState()

    def video_diagnostics(self, state: VideoState) -> Dict[str, int]:
        """What the detection caps dropped in this video (``projects.modeling.online`` puts it in the video's
        output, the evaluator logs it per video and sums it into ``metrics.json``): frames where more
        detections survived NMS than ``INFERENCE.MAX_DETECTIONS`` slots, or more peaks passed the score
        threshold than ``INFERENCE.TOPK_CANDIDATES``, and how many each dropped. Host integers, counted from
        each frame's one device-to-host copy (no extra sync)."""
        return {
            "frames": state.num_frames,
            "frames_over_max_detections": state.frames_over_max_detections,
            "detections_over_max_detections": state.detections_over_max_detections,
            "frames_over_topk_candidates": state.frames_over_topk_candidates,
            "candidates_over_topk_candidates": state.candidates_over_topk_candidates,
        }

    def finalize_video(self, state: VideoState, tracks: Dict[int, Any]) -> None:
        """Video-level track scores (``TRACK.VIDEO_SCORE``); the class stays the default score-weighted vote
        (a track is single-class anyway: class-mismatched edges are pruned, §3.5)."""
        if self.video_score == "coverage":
            for track in tracks.values():
                track.score = float(sum(track.frame_scores)) / max(state.num_frames, 1)

    def _frame_features(
        self, frame: Dict[str, Any], state: VideoState
    ) -> Tuple[torch.Tensor, Tuple[int, int], List[torch.Tensor]]:
        """Normalise and pad one frame (as ``preprocess``, with integer padding: no shape tensors), run the
        backbone; a new input size resets the frame-to-frame context. Returns (1, 3, H_pad, W_pad), (h, w)."""
        x = (frame["image"].to(self.device).float() - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        div = max(int(self.size_divisibility), 1)
        x = F.pad(x, (0, -(-w // div) * div - w, 0, -(-h // div) * div - h))[None]
        features = self.extract_features(x)
        if state.input_shape != tuple(x.shape[-2:]):
            state.reset_frame_context()
        return x, (h, w), features

    def _reference_instances(self, state: VideoState) -> Optional[ReferenceSet]:
        """The reference set of this frame, with the node features of frame t-1's detections ROIAligned from
        F_{t-1} now (only the detections that became reference instances)."""
        refs = state.refs
        if refs is None or len(refs) == 0:
            return None
        n = state.pending_nodes
        if n > 0 and self.graph is not None:
            new = self.graph.encode_nodes(state.prev_features, [refs.boxes[:n]])
            refs.nodes = [torch.cat([a.to(b.dtype), b[n:]]) for a, b in zip(new, refs.nodes)]
            state.pending_nodes = 0
        return refs

    @torch.no_grad()
    def step(self, frame: Dict[str, Any], state: VideoState) -> Instances:
        """Process frame t online (§3.6) with frame t-1 and the memory as reference; updates ``state``.

        No host synchronisation on the device until the end: detections are ``INFERENCE.MAX_DETECTIONS``
        padded slots, NMS / matching are fixed-point iterations (:mod:`.sync_free`), track ids and the
        reference set are updated on the device, and the frame's outputs, the size of the next reference set
        and the iterations' convergence flag come back in one copy. Returns ``Instances`` on the CPU."""
        t = int(frame["frame_idx"])
        state.num_frames = max(state.num_frames, t + 1)
        images, image_size, features = self._frame_features(frame, state)
        output_size = (int(frame["height"]), int(frame["width"]))
        baseline = self.inference_cfg.BASELINE
        refs = None if baseline else self._reference_instances(state)
        heads_in, edges = features, None
        if refs is not None and self.graph is not None:
            fused, edges = self.graph.forward_online(refs.nodes, refs.centers, features)
            heads_in = fused if self.relation_fusion else features
        prev = None if baseline else state.prev_features
        if self.concat_fusion is not None and prev is not None:
            heads_in = self.concat_fusion(features, prev)
        heads = _FrameHeads(
            det=self.det_head(heads_in),
            thetas=self.controller(heads_in),
            mask_feats=self.mask_branch(heads_in[0]),
            embed_maps=self.embed_head(heads_in) if self.association == "embedding" and not baseline else None,
            offset_maps=self.offset_head(heads_in, prev) if self.offset_head is not None and prev is not None else None,
        )
        iters = self.inference_cfg.FIXED_POINT_ITERS
        counter = state.next_track_id
        out = self._track(heads, features, edges, refs, state, t, iters)
        host = self._to_host(out, image_size, output_size)
        if not host["converged"]:  # a conflict chain longer than FIXED_POINT_ITERS: redo this frame exactly
            state.next_track_id = counter
            out = self._track(heads, features, edges, refs, state, t, EXACT)
            host = self._to_host(out, image_size, output_size)
        state.count_dropped(*host["dropped"])
        state.refs = out["refs"][slice(0, host["num_refs"])]
        state.pending_nodes = 0 if baseline else host["num_pending"]
        if not baseline:
            state.prev_features, state.prev_thetas = features, heads.thetas
        state.input_shape = tuple(images.shape[-2:])
        return host["instances"]

    def _track(
        self,
        heads: _FrameHeads,
        features: List[torch.Tensor],
        edges: Optional[List[GraphEdges]],
        refs: Optional[ReferenceSet],
        state: VideoState,
        t: int,
        iters: int,
    ) -> Dict[str, Any]:
        """Detections, masks, association, track ids and next reference set of frame t, all fixed-size."""
        ic = self.inference_cfg
        dets, converged = CenterNetHead.inference(
            *heads.det, self.strides, ic.SCORE_THRESH, ic.TOPK_CANDIDATES, ic.NMS_THRESH, ic.MAX_DETECTIONS, iters
        )
        zeros = dets.level.new_zeros(len(dets))
        kernels = gather_at_cells_static(heads.thetas, dets.level, dets.cells)
        mask_probs = self.predict_masks(heads.mask_feats, kernels, dets.level, dets.cells, zeros).sigmoid()
        embeddings = None
        if heads.embed_maps is not None:
            embeddings = gather_at_cells_static(heads.embed_maps, dets.level, dets.cells)

        det_to_ref = zeros - 1
        if ic.BASELINE:
            # "iou": greedy one-to-one box-IoU linking to frame t-1's detections; "per_frame": no linking.
            refs = state.refs if state.refs is not None and len(state.refs) > 0 else None
            if ic.BASELINE == "iou" and refs is not None:
                iou = box_iou(refs.boxes, dets.boxes)
                valid = (iou >= ic.BASELINE_IOU) & (refs.classes[:, None] == dets.classes[None, :])
                det_to_ref, conv = greedy_match_fixed_point(iou, valid & dets.valid[None, :], iters)
                converged = converged & conv
            track_ids = OnlineTracker.assign_track_ids(state, refs, det_to_ref, dets.valid)
            nxt = ReferenceSet(
                track_ids, dets.classes, dets.scores, dets.boxes, [], kernels, dets.level, torch.full_like(track_ids, t)
            )
            return dict(
                dets=dets,
                track_ids=track_ids,
                mask_probs=mask_probs,
                refs=nxt,
                num_refs=dets.valid.sum(),
                num_pending=zeros.sum(),
                converged=converged,
            )

        # §3.5: association with the reference instances.
        if refs is not None:
            if self.association == "edge":
                scores, valid = self._edge_scores(edges, len(refs), dets)
            elif self.association == "offset":
                displacement = dets.boxes.new_zeros(len(dets), 2)
                if heads.offset_maps is not None:  # cells of the detection's level -> input pixels
                    cells = gather_at_cells_static(heads.offset_maps, dets.level, dets.cells)
                    displacement = cells * self.level_strides[dets.level][:, None]
                scores, valid = OffsetHead.match_scores(refs.boxes, dets.boxes, displacement, self.offset_min_iou)
            else:
                scores, valid = EmbeddingHead.match_scores(refs.embeddings, embeddings)
            det_to_ref, conv = self.tracker.associate(
                scores, valid & dets.valid[None, :], refs.classes, dets.classes, iters
            )
            converged = converged & conv

        # §3.4: masks of the warped reference kernels (read at the detections only), fused with eq. (4)'s.
        if self.kernel_warp is not None and self.fuse_test and state.prev_thetas is not None:
            warped = self.kernel_warp.warp_at_cells(
                state.prev_thetas, state.prev_features, features, dets.level, dets.cells
            )
            kernel_level = dets.level
            if refs is not None:
                # A detection matched to an instance from the memory uses that instance's stored kernel, decoded
                # with the coordinate normaliser of the level it was produced at (the object may have changed
                # level while occluded).
                ref = det_to_ref.clamp(min=0)
                from_memory = (det_to_ref >= 0) & (refs.last_seen[ref] < t - 1)
                warped = torch.where(from_memory[:, None], refs.kernels[ref].to(warped.dtype), warped)
                kernel_level = torch.where(from_memory, refs.kernel_levels[ref], dets.level)
            warped_probs = self.predict_masks(
                heads.mask_feats, warped, dets.level, dets.cells, zeros, kernel_level
            ).sigmoid()
            mask_probs = (mask_probs + warped_probs) / 2

        track_ids = OnlineTracker.assign_track_ids(state, refs, det_to_ref, dets.valid)
        # Node features of the new reference instances are ROIAligned at the next frame (_reference_instances).
        placeholder = [f.new_zeros(len(dets), f.shape[1]) for f in features]
        current = ReferenceSet(
            track_ids,
            dets.classes,
            dets.scores,
            dets.boxes,
            placeholder,
            kernels,
            dets.level,
            torch.full_like(track_ids, t),
            embeddings,
        )
        nxt, num_refs, num_pending = self.tracker.next_references_padded(current, refs, det_to_ref, t, dets.valid)
        return dict(
            dets=dets,
            track_ids=track_ids,
            mask_probs=mask_probs,
            refs=nxt,
            num_refs=num_refs,
            num_pending=num_pending,
            converged=converged,
        )

    def _edge_scores(
        self, edges: List[GraphEdges], num_ref: int, dets: Detections
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Edge-classifier probabilities (N_ref, D) for the edges that reach detected nodes (background
        pruning); ``valid`` marks existing edges with probability >= TRACK.MATCH_THRESH. An edge exists when the
        detection's cell lies in the reference instance's window on the detection's level (fixed layout of
        :meth:`SpatialTemporalGraph.forward_online`: the edge index is computed, not searched)."""
        scores = dets.scores.new_zeros(num_ref, len(dets))
        exists = torch.zeros_like(scores, dtype=torch.bool)
        rows = torch.arange(num_ref, device=scores.device)[:, None]
        for lvl, e in enumerate(edges):
            w, half = e.window, e.window // 2
            dx = dets.cells[None, :, 0] - e.ref_cells[:, None, 0] + half  # (N_ref, D)
            dy = dets.cells[None, :, 1] - e.ref_cells[:, None, 1] + half
            inside = (dx >= 0) & (dx < w) & (dy >= 0) & (dy < w) & (dets.level == lvl)[None, :]
            idx = rows * (w * w) + dy.clamp(0, w - 1) * w + dx.clamp(0, w - 1)
            prob = self.edge_classifier(e.features[idx.flatten()]).sigmoid().view_as(scores)
            hit = inside & e.valid[idx]
            scores = torch.where(hit, prob.to(scores.dtype), scores)
            exists = exists | hit
        return scores, exists & (scores >= self.match_thresh)

    def _to_host(self, out: Dict[str, Any], image_size: Tuple[int, int], output_size: Tuple[int, int]) -> Dict:
        """Masks and boxes from the padded input frame to the original (H, W), then everything the host needs
        (outputs, next reference-set size, convergence flag) in one device-to-host copy."""
        dets, mask_probs = out["dets"], out["mask_probs"]
        h, w = image_size
        out_h, out_w = output_size
        probs = F.interpolate(
            mask_probs[:, None], scale_factor=self.mask_out_stride, mode="bilinear", align_corners=False
        )[:, :, :h, :w]
        masks = F.interpolate(probs, size=output_size, mode="bilinear", align_corners=False)[:, 0]
        masks = masks > self.mask_threshold
        b = dets.boxes
        x0, x1 = (b[:, 0] * (out_w / w)).clamp(0, out_w), (b[:, 2] * (out_w / w)).clamp(0, out_w)
        y0, y1 = (b[:, 1] * (out_h / h)).clamp(0, out_h), (b[:, 3] * (out_h / h)).clamp(0, out_h)
        meta = torch.stack(
            [
                out["track_ids"].double(),
                dets.classes.double(),
                dets.scores.double(),
                x0.double(),
                y0.double(),
                x1.double(),
                y1.double(),
            ],
            dim=1,
        ).flatten()
        counts = torch.cat(
            [
                torch.stack([dets.valid.sum(), out["num_refs"], out["num_pending"], out["converged"].long()]),
                dets.dropped,
            ]
        )
        packed = torch.cat([meta, counts.double()]).view(torch.uint8)
        blob = torch.cat([packed, masks.flatten().view(torch.uint8)]).cpu()  # the frame's one copy
        n_meta = meta.numel()
        values = blob[: packed.numel()].view(torch.float64)
        meta, counts = values[:n_meta].view(-1, 7), values[n_meta:].long().tolist()
        num = counts[0]
        result = Instances(output_size)
        result.track_ids = meta[:num, 0].long()
        result.pred_classes = meta[:num, 1].long()
        result.scores = meta[:num, 2].float()
        result.pred_boxes = Boxes(meta[:num, 3:7].float())  # clipped to the frame on the device
        result.pred_masks = blob[packed.numel() :].view(torch.bool).view(len(dets), out_h, out_w)[:num]
        return {
            "instances": result,
            "num_refs": counts[1],
            "num_pending": counts[2],
            "converged": bool(counts[3]),
            "dropped": counts[4:6],
        }


@dataclass
class _FrameHeads:
    """Head outputs of one frame: CenterNet (heat maps, sizes, offsets per level), θ maps per level, mask
    features F̂^d_t and, for the embedding / offset association, the embedding / displacement maps."""

    det: Tuple[List[torch.Tensor], List[torch.Tensor], List[torch.Tensor]]
    thetas: List[torch.Tensor]
    mask_feats: torch.Tensor
    embed_maps: Optional[List[torch.Tensor]]
    offset_maps: Optional[List[torch.Tensor]] = None
