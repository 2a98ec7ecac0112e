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
is an eval-time switch.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import CfgNode
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import Boxes, ImageList, Instances
from torch import nn
from torchvision.ops import box_iou

from projects.modeling.online import run_online_inference

from .detection_head import CenterNetHead, Detections
from .embedding_head import EmbeddingHead
from .graph import GraphEdges, SpatialTemporalGraph, edge_lookup
from .kernel_warp import KernelWarp
from .init_summary import install_init_summary
from .losses import dice_loss, graph_anchor
from .mask_head import Controller, DynamicMaskHead, MaskBranch, downsample_gt_masks
from .targets import CenterTargets, assign_centers, expand_positives, gather_at_cells
from .tracker import EdgeClassifier, OnlineTracker, ReferenceSet, VideoState, greedy_match

__all__ = ["VisSTG"]


@META_ARCH_REGISTRY.register()
class VisSTG(nn.Module):
    """Backbone-FPN → spatial-temporal graph (§3.2) → CenterNet (§3.3) + CondInst with kernel warping (§3.4)
    → edge-feature tracking (§3.5). Configured by ``cfg.MODEL.VIS_STG`` (see ``vis_stg/config.py``)."""

    def __init__(self, cfg: CfgNode):
        super().__init__()
        c = cfg.MODEL.VIS_STG
        self.num_classes = int(cfg.MODEL.NUM_CLASSES)
        if self.num_classes <= 0:
            raise ValueError(f"MODEL.NUM_CLASSES must be resolved to a positive number of classes before "
                             f"building VisSTG (got {self.num_classes}); train_net.py does this from the dataset")
        self.backbone = build_backbone(cfg)  # COCO-pretrained when MODEL.WEIGHTS says so (README "Initialisation")
        install_init_summary(self)  # one log line after loading weights: what was loaded, what stays random
        shapes = self.backbone.output_shape()
        self.in_features = list(c.IN_FEATURES)
        missing = [f for f in self.in_features if f not in shapes]
        if missing:
            raise ValueError(f"VIS_STG.IN_FEATURES {missing} not produced by the backbone ({sorted(shapes)})")
        self.strides = [shapes[f].stride for f in self.in_features]
        dim = shapes[self.in_features[0]].channels
        if any(shapes[f].channels != dim for f in self.in_features):
            raise ValueError("all VIS_STG.IN_FEATURES must have the same number of channels")
        self.sizes_of_interest = list(c.SIZES_OF_INTEREST)
        self.level_assignment = c.LEVEL_ASSIGNMENT
        # Relative-coordinate normaliser per level (CondInst): the level's upper size bound.
        bounds = self.sizes_of_interest
        self.coord_norm = bounds + [2.0 * bounds[-1]] if bounds else [8.0 * self.strides[0]]
        self.size_divisibility = c.SIZE_DIVISIBILITY or self.backbone.size_divisibility

        self.fusion = c.GRAPH.FUSION
        self.graph = SpatialTemporalGraph(
            dim, self.strides, c.GRAPH.WINDOW_SIZES, c.GRAPH.HIDDEN_DIM, c.GRAPH.NUM_ITERS,
            c.GRAPH.AGGREGATION, c.GRAPH.POOLER_RESOLUTION, c.GRAPH.POOLER_SAMPLING_RATIO, c.GRAPH.NODE_POOL)
        self.det_head = CenterNetHead(dim, self.num_classes, c.DET.NUM_CONVS, c.DET.CONV_DIM, c.DET.PRIOR_PROB)
        self.mask_branch = MaskBranch(dim, c.MASK.BRANCH_CHANNELS, c.MASK.BRANCH_NUM_CONVS, c.MASK.BRANCH_CONV_DIM)
        self.mask_head = DynamicMaskHead(c.MASK.BRANCH_CHANNELS, c.MASK.HEAD_CHANNELS, c.MASK.HEAD_NUM_LAYERS,
                                         self.strides[0], c.MASK.OUT_STRIDE)
        self.controller = Controller(dim, self.mask_head.num_params, c.MASK.CONTROLLER_NUM_CONVS,
                                     c.MASK.CONTROLLER_CONV_DIM)
        self.kernel_warp = (KernelWarp(dim, self.mask_head.num_params, c.WARP.NUM_CONVS, c.WARP.CONV_DIM,
                                       c.WARP.KERNEL_SIZE, c.WARP.DEPTHWISE, c.WARP.IMPL) if c.WARP.ENABLED else None)

        self.association = c.TRACK.ASSOCIATION
        if self.association not in ("edge", "embedding"):
            raise ValueError(f"VIS_STG.TRACK.ASSOCIATION must be 'edge' or 'embedding', got {self.association!r}")
        # TRACK.JOINT_EMBEDDING: both heads are trained (the embedding head on detached features) and
        # ASSOCIATION only picks the one used at test time.
        self.joint_embedding = bool(c.TRACK.JOINT_EMBEDDING)
        self.train_edge = self.association == "edge" or self.joint_embedding
        self.train_embedding = self.association == "embedding" or self.joint_embedding
        if self.train_edge:
            self.edge_classifier = EdgeClassifier(dim, c.TRACK.CLASSIFIER_HIDDEN_DIM)
        if self.train_embedding:
            self.embed_head = EmbeddingHead(dim, c.TRACK.EMBED_DIM, c.TRACK.EMBED_NUM_CONVS, c.DET.CONV_DIM)
        self.tracker = OnlineTracker(c.TRACK.MEMORY_FRAMES, c.TRACK.PRUNE_CLASS_MISMATCH, c.TRACK.REF_SCORE_THRESH)
        self.match_thresh = c.TRACK.MATCH_THRESH
        self.video_score = c.TRACK.VIDEO_SCORE
        if self.video_score not in ("mean", "coverage"):
            raise ValueError(f"VIS_STG.TRACK.VIDEO_SCORE must be 'mean' or 'coverage', got {self.video_score!r}")

        self.loss_weights = (c.LOSS_WEIGHT_DET, c.LOSS_WEIGHT_MASK, c.LOSS_WEIGHT_EDGE)
        self.det_cfg = c.DET.clone()
        self.track_cfg = c.TRACK.clone()
        self.mask_pos_radius = c.MASK.POS_RADIUS
        self.mask_out_stride = c.MASK.OUT_STRIDE
        self.fuse_test = c.MASK.FUSE_TEST
        self.inference_cfg = c.INFERENCE.clone()
        if self.inference_cfg.BASELINE not in ("", "per_frame", "iou"):
            raise ValueError(f"VIS_STG.INFERENCE.BASELINE must be '', 'per_frame' or 'iou', "
                             f"got {self.inference_cfg.BASELINE!r}")
        self.mask_threshold = cfg.TEST.VIDEO.MASK_THRESHOLD
        self.max_tracks = cfg.TEST.VIDEO.MAX_TRACKS

        self.register_buffer("pixel_mean", torch.tensor(cfg.MODEL.PIXEL_MEAN).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(cfg.MODEL.PIXEL_STD).view(-1, 1, 1), False)
        self.to(torch.device(cfg.MODEL.DEVICE))

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
        self, ref_nodes: List[torch.Tensor], ref_boxes: torch.Tensor, ref_batch: torch.Tensor,
        features_t: List[torch.Tensor],
    ) -> Tuple[List[torch.Tensor], List[GraphEdges]]:
        """§3.2: fuse F_t with the reference instances; returns the heads' input (F̂_t, or F_t when
        GRAPH.FUSION is off) and the final edges of every level."""
        centers = (ref_boxes[:, :2] + ref_boxes[:, 2:]) / 2
        fused, edges = self.graph(ref_nodes, centers, ref_batch, features_t)
        return (fused if self.fusion else list(features_t)), edges

    def predict_masks(
        self, mask_feats: torch.Tensor, kernels: torch.Tensor, level: torch.Tensor, cells: torch.Tensor,
        batch_idx: torch.Tensor,
    ) -> torch.Tensor:
        """Eq. (4)/(5) for kernels read at (level, cell): mask logits (P, H / OUT_STRIDE, W / OUT_STRIDE)."""
        strides = torch.tensor(self.strides, device=cells.device, dtype=torch.float32)[level]
        locations = (cells.float() + 0.5) * strides[:, None]
        norm = torch.tensor(self.coord_norm, device=cells.device, dtype=torch.float32)[level]
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
        assign = dict(shapes=shapes, strides=self.strides, sizes_of_interest=self.sizes_of_interest,
                      level_assignment=self.level_assignment,
                      num_classes=self.num_classes, min_overlap=self.det_cfg.MIN_OVERLAP)
        targets_k, targets_t = assign_centers(inst_k, **assign), assign_centers(inst_t, **assign)

        # §3.2: the GT boxes of frame k are the reference nodes (same order as targets_k).
        ref_boxes = [x.gt_boxes.tensor for x in inst_k]
        ref_nodes = self.graph.encode_nodes(feats_k, ref_boxes)
        heads_in, edges = self.run_graph(ref_nodes, torch.cat(ref_boxes), targets_k.batch_idx, feats_t)

        det_out_t = self.det_head(heads_in)
        losses = self._detection_losses(heads_in, targets_t, det_out_t)
        if self.det_cfg.REF_FRAME_LOSS:
            losses.update({k + "_ref": v for k, v in self._detection_losses(feats_k, targets_k).items()})
        padded = tuple(images.tensor.shape[-2:])
        losses.update(self._segmentation_losses(heads_in, feats_k, feats_t, inst_k, inst_t, targets_k, targets_t,
                                                padded, shapes))
        losses.update(self._association_losses(heads_in, feats_k, edges, targets_k, targets_t, shapes, det_out_t[0]))
        return losses

    def _detection_losses(
        self, features: List[torch.Tensor], targets: CenterTargets, det_out: Optional[Tuple] = None
    ) -> Dict[str, torch.Tensor]:
        """λ1 · eq. (3), reported per term; ``det_out``: the head's outputs on ``features`` if already computed."""
        d, weight = self.det_cfg, self.loss_weights[0]
        raw = CenterNetHead.losses(*(det_out or self.det_head(features)), targets, d.FOCAL_ALPHA, d.FOCAL_BETA)
        return {"loss_center": weight * raw["loss_center"], "loss_size": weight * d.SIZE_WEIGHT * raw["loss_size"],
                "loss_offset": weight * d.OFFSET_WEIGHT * raw["loss_offset"]}

    def _segmentation_losses(
        self, heads_in: List[torch.Tensor], feats_k: List[torch.Tensor], feats_t: List[torch.Tensor],
        inst_k: List[Instances], inst_t: List[Instances], targets_k: CenterTargets, targets_t: CenterTargets,
        padded: Tuple[int, int], shapes: Sequence[Tuple[int, int]],
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
        self, heads_in: List[torch.Tensor], feats_k: List[torch.Tensor], edges: List[GraphEdges],
        targets_k: CenterTargets, targets_t: CenterTargets, shapes: Sequence[Tuple[int, int]],
        heatmaps_t: List[torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        """λ3 · L_edge (eq. (6)), and/or the embedding baseline's cross-entropy (on detached features when it
        is trained next to the edge classifier, ``TRACK.JOINT_EMBEDDING``)."""
        weight = self.loss_weights[2]
        losses = {}
        if self.train_edge:
            tc = self.track_cfg
            losses["loss_edge"] = weight * self.edge_classifier.losses(
                edges, targets_k.ids, targets_k.classes, targets_k.batch_idx, targets_t, shapes, heatmaps_t,
                self.num_classes, tc.TRAIN_EDGE_SET, tc.TRAIN_SCORE_THRESH, tc.TRAIN_MATCH_RADIUS,
                self.tracker.prune_class_mismatch)
        if self.train_embedding:
            if self.joint_embedding:
                heads_in, feats_k = [f.detach() for f in heads_in], [f.detach() for f in feats_k]
            emb_t, emb_k = self.embed_head(heads_in), self.embed_head(feats_k)
            losses["loss_embed"] = weight * EmbeddingHead.losses(
                gather_at_cells(emb_t, targets_t.level, targets_t.batch_idx, targets_t.cells),
                targets_t.batch_idx, targets_t.ids,
                gather_at_cells(emb_k, targets_k.level, targets_k.batch_idx, targets_k.cells),
                targets_k.batch_idx, targets_k.ids)
            if len(targets_t) == 0:  # no target instance: keep the embedding head in the graph (DDP)
                losses["loss_embed"] = losses["loss_embed"] + graph_anchor(*emb_t, *emb_k)
        return losses

    def _mask_loss(
        self, thetas: List[torch.Tensor], mask_feats: torch.Tensor, targets: CenterTargets,
        gt_masks: torch.Tensor, shapes: Sequence[Tuple[int, int]],
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

    def finalize_video(self, state: VideoState, tracks: Dict[int, Any]) -> None:
        """Video-level track scores (``TRACK.VIDEO_SCORE``); the class stays the default score-weighted vote
        (a track is single-class anyway: class-mismatched edges are pruned, §3.5)."""
        if self.video_score == "coverage":
            for track in tracks.values():
                track.score = float(sum(track.frame_scores)) / max(state.num_frames, 1)

    def _frame_features(self, frame: Dict[str, Any], state: VideoState) -> Tuple[ImageList, List[torch.Tensor]]:
        """Preprocess one frame and run the backbone; a new input size resets the frame-to-frame context."""
        images = self.preprocess([frame["image"]])
        features = self.extract_features(images.tensor)
        if state.input_shape != tuple(images.tensor.shape[-2:]):
            state.reset_frame_context()
        return images, features

    def _detect_and_segment(
        self, heads_in: List[torch.Tensor]
    ) -> Tuple[Detections, List[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
        """CenterNet detections on the (fused) features of one frame and their eq. (4) masks. Returns the
        detections, θ maps per level, per-detection kernels (N, 169), mask features F̂^d_t and mask
        probabilities (N, H, W)."""
        ic = self.inference_cfg
        dets = CenterNetHead.inference(*self.det_head(heads_in), self.strides, ic.SCORE_THRESH,
                                       ic.TOPK_CANDIDATES, ic.NMS_THRESH, ic.MAX_DETECTIONS)
        zeros = dets.level.new_zeros(len(dets))
        thetas = self.controller(heads_in)
        kernels = gather_at_cells(thetas, dets.level, zeros, dets.cells)
        mask_feats = self.mask_branch(heads_in[0])
        mask_probs = self.predict_masks(mask_feats, kernels, dets.level, dets.cells, zeros).sigmoid()
        return dets, thetas, kernels, mask_feats, mask_probs

    @torch.no_grad()
    def step(self, frame: Dict[str, Any], state: VideoState) -> Instances:
        """Process frame t online (§3.6) with frame t-1 and the memory as reference; updates ``state``."""
        t = int(frame["frame_idx"])
        state.num_frames = max(state.num_frames, t + 1)
        if self.inference_cfg.BASELINE:
            return self._baseline_step(frame, state)
        images, features = self._frame_features(frame, state)
        shapes = [tuple(f.shape[-2:]) for f in features]
        refs = state.refs

        heads_in, edges = features, None
        if refs is not None and len(refs) > 0:
            heads_in, edges = self.run_graph(refs.nodes, refs.boxes, refs.boxes.new_zeros(len(refs)).long(),
                                             features)
        dets, thetas, kernels, mask_feats, mask_probs = self._detect_and_segment(heads_in)
        zeros = dets.level.new_zeros(len(dets))
        embeddings = None
        if self.association == "embedding":
            embeddings = gather_at_cells(self.embed_head(heads_in), dets.level, zeros, dets.cells)

        # §3.5: association with the reference instances.
        det_to_ref = zeros.new_full((len(dets),), -1)
        if refs is not None and len(refs) > 0 and len(dets) > 0:
            if self.association == "edge":
                scores, valid = self._edge_scores(edges, len(refs), dets, shapes)
            else:
                scores, valid = EmbeddingHead.match_scores(refs.embeddings, embeddings)
            det_to_ref = self.tracker.associate(scores, valid, refs.classes, dets.classes)

        # §3.4: masks of the warped reference kernels, fused with eq. (4)'s masks.
        if (self.kernel_warp is not None and self.fuse_test and state.prev_thetas is not None and len(dets) > 0):
            thetas_w = self.kernel_warp.warp_levels(state.prev_thetas, state.prev_features, features)
            warped = gather_at_cells(thetas_w, dets.level, zeros, dets.cells)
            if refs is not None and len(refs) > 0:
                # A detection matched to an instance from the memory uses that instance's stored kernel.
                from_memory = (det_to_ref >= 0) & (refs.last_seen[det_to_ref.clamp(min=0)] < t - 1)
                warped[from_memory] = refs.kernels[det_to_ref[from_memory]]
            warped_probs = self.predict_masks(mask_feats, warped, dets.level, dets.cells, zeros).sigmoid()
            mask_probs = (mask_probs + warped_probs) / 2

        track_ids = OnlineTracker.assign_track_ids(state, refs, det_to_ref)
        current = ReferenceSet(track_ids, dets.classes, dets.scores, dets.boxes,
                               self.graph.encode_nodes(features, [dets.boxes]), kernels,
                               torch.full_like(track_ids, t), embeddings)
        state.refs = self.tracker.next_references(current, refs, det_to_ref, t)
        state.prev_features, state.prev_thetas = features, thetas
        state.input_shape = tuple(images.tensor.shape[-2:])
        return self._postprocess(dets, mask_probs, track_ids, images.image_sizes[0],
                                 (int(frame["height"]), int(frame["width"])))

    @torch.no_grad()
    def _baseline_step(self, frame: Dict[str, Any], state: VideoState) -> Instances:
        """``INFERENCE.BASELINE``: plain heads on F_t (no graph, no warp) and either no linking ("per_frame":
        every detection is a new track) or greedy box-IoU linking to frame t-1's detections ("iou")."""
        t = int(frame["frame_idx"])
        images, features = self._frame_features(frame, state)
        dets, _, kernels, _, mask_probs = self._detect_and_segment(features)
        ic = self.inference_cfg
        refs = state.refs
        det_to_ref = dets.level.new_full((len(dets),), -1)
        if ic.BASELINE == "iou" and refs is not None and len(refs) > 0 and len(dets) > 0:
            iou = box_iou(refs.boxes, dets.boxes)
            valid = (iou >= ic.BASELINE_IOU) & (refs.classes[:, None] == dets.classes[None, :])
            det_to_ref = greedy_match(iou, valid)
        track_ids = OnlineTracker.assign_track_ids(state, refs, det_to_ref)
        state.refs = ReferenceSet(track_ids, dets.classes, dets.scores, dets.boxes, [], kernels,
                                  torch.full_like(track_ids, t))
        state.input_shape = tuple(images.tensor.shape[-2:])
        return self._postprocess(dets, mask_probs, track_ids, images.image_sizes[0],
                                  (int(frame["height"]), int(frame["width"])))

    def _edge_scores(
        self, edges: List[GraphEdges], num_ref: int, dets: Detections, shapes: Sequence[Tuple[int, int]]
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Edge-classifier probabilities (N_ref, N_det) for the edges that reach detected nodes (background
        pruning); ``valid`` marks existing edges with probability >= TRACK.MATCH_THRESH."""
        scores = dets.scores.new_zeros(num_ref, len(dets))
        exists = torch.zeros_like(scores, dtype=torch.bool)
        for lvl, (e, (_, w)) in enumerate(zip(edges, shapes)):
            sel = torch.nonzero(dets.level == lvl).flatten()
            if sel.numel() == 0:
                continue
            cells = dets.cells[sel, 1] * w + dets.cells[sel, 0]
            ref_idx, cell_idx, edge_idx = edge_lookup(e, num_ref, cells)
            scores[ref_idx, sel[cell_idx]] = self.edge_classifier(e.features[edge_idx]).sigmoid()
            exists[ref_idx, sel[cell_idx]] = True
        return scores, exists & (scores >= self.match_thresh)

    def _postprocess(
        self, dets: Detections, mask_probs: torch.Tensor, track_ids: torch.Tensor,
        image_size: Tuple[int, int], output_size: Tuple[int, int],
    ) -> Instances:
        """Masks and boxes from the padded input frame to the original (H, W)."""
        h, w = image_size
        out_h, out_w = output_size
        result = Instances(output_size)
        if len(dets) > 0:
            probs = F.interpolate(mask_probs[:, None], scale_factor=self.mask_out_stride, mode="bilinear",
                                  align_corners=False)[:, :, :h, :w]
            probs = F.interpolate(probs, size=output_size, mode="bilinear", align_corners=False)[:, 0]
            masks = probs > self.mask_threshold
        else:
            masks = torch.zeros(0, out_h, out_w, dtype=torch.bool, device=self.device)
        boxes = Boxes(dets.boxes * dets.boxes.new_tensor([out_w / w, out_h / h, out_w / w, out_h / h]))
        boxes.clip(output_size)
        result.track_ids = track_ids
        result.scores = dets.scores
        result.pred_classes = dets.classes
        result.pred_masks = masks
        result.pred_boxes = boxes
        return result
