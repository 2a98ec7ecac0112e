"""VisSTG meta-architecture: joint detection, segmentation and tracking on a spatial-temporal graph (§3).

Training (§3.6) takes a (reference k, target t) frame pair per video: GT boxes of frame k give the graph's
reference nodes (§3.2), the heads run on the fused target features F̂_t, and the loss is eq. (7)
λ1 L_det + λ2 L_mask + λ3 L_edge, with L_mask applied to θ_t and θ_warp on frame t and to θ_k on frame k; λ3
weighs the loss of every trained association cue (:mod:`.association`).
Inference is online (:func:`projects.modeling.online.run_online_inference` drives :meth:`VisSTG.step`): frame t
is the target and frame t-1's detections plus the occlusion memory are the reference instances; the first frame
(or a frame after a change of input size) uses the plain heads, without graph or warp. The step's decoding,
matching and memory update are the pure functions of :mod:`.online_step`. :meth:`VisSTG.finalize_video` sets
the video-level track scores. ``INFERENCE.BASELINE`` turns the same weights into the trivial baselines of
``vis_stg/README.md`` (plain heads on every frame; ``iou``: box-IoU linking to frame t-1, no memory).

Shapes: B frame pairs in training (images stacked as [k-frames, t-frames]), G GT objects, L FPN levels with
(B, D, H_l, W_l) features; online: N reference instances, M = ``INFERENCE.MAX_DETECTIONS`` detection slots.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.config import CfgNode, configurable
from detectron2.modeling import META_ARCH_REGISTRY, Backbone
from detectron2.structures import ImageList, Instances
from torch import nn

from projects.modeling.bottom_up_tap import forward_with_bottom_up
from projects.modeling.online import check_num_classes, normalize_image, pad_frame, run_online_inference

from . import box_iou_association, edge_classifier, embedding_head, offset_head  # noqa: F401 (register the cues)
from .association import Association, PairInputs, association_class
from .build import vis_stg_arguments
from .concat_fusion import ConcatFusion
from .detection_head import CenterNetHead, DetectionLossSettings
from .graph import SpatialTemporalGraph
from .kernel_warp import KernelWarp
from .mask_head import Controller, DynamicMaskHead, MaskBranch
from .online_step import DecodeSettings, FrameHeads, TrackSettings, frame_to_host, message_senders, track_frame
from .pair_losses import detection_losses, segmentation_losses
from .state import ReferenceSet, VideoState
from .sync_free import EXACT
from .targets import assign_centers

__all__ = ["VisSTG"]


@META_ARCH_REGISTRY.register()
class VisSTG(nn.Module):
    """Backbone-FPN → spatial-temporal graph (§3.2) → CenterNet (§3.3) + CondInst with kernel warping (§3.4)
    → association (§3.5) with the occlusion memory (§3.6). Configured by ``cfg.MODEL.VIS_STG``."""

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
        associations: Sequence[Association],
        concat_fusion: Optional[ConcatFusion] = None,
        num_classes: int,
        in_features: Sequence[str],
        mask_in_feature: str = "",
        mask_detail_feature: str = "",
        sizes_of_interest: Sequence[float],
        level_assignment: str = "fcos",
        size_divisibility: int = 0,
        fusion: bool = True,
        fusion_type: str = "relation",
        association: str = "edge",
        baseline: str = "",
        decode: DecodeSettings = DecodeSettings(),  # noqa: B008 (frozen dataclass: immutable default)
        track: TrackSettings = TrackSettings(),  # noqa: B008 (frozen dataclass)
        video_score: str = "mean",
        loss_weights: Tuple[float, float, float] = (1.0, 1.0, 1.0),
        det_loss: DetectionLossSettings = DetectionLossSettings(),  # noqa: B008 (frozen dataclass)
        mask_pos_radius: int = 1,
        fuse_test: bool = True,
        mask_threshold: float = 0.5,
        max_tracks: int = 100,
        classes_per_track: int = 1,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
    ):
        """``associations``: the built association cues (every trained one, and the one used at test time:
        ``association``, or ``box_iou`` for ``baseline`` "iou"); ``graph`` exists when it is used (relation
        fusion or a cue reading edges), ``concat_fusion`` for the "Concat" fusion."""
        super().__init__()
        self.num_classes = check_num_classes(num_classes, "VisSTG")
        self.backbone = backbone  # COCO-pretrained when MODEL.WEIGHTS says so (README "Initialisation")
        self.in_features = list(in_features)  # checked against the backbone by from_config
        self.mask_in_feature = mask_in_feature  # "" or a finer level added to the mask branch's input
        self.mask_detail_feature = mask_detail_feature  # "" or a finer bottom-up level added to its output
        self.strides = [self.backbone.output_shape()[f].stride for f in self.in_features]
        self.sizes_of_interest, self.level_assignment = list(sizes_of_interest), level_assignment
        # Relative-coordinate normaliser per level (CondInst): the level's upper size bound.
        bounds = self.sizes_of_interest
        self.coord_norm = bounds + [2.0 * bounds[-1]] if bounds else [8.0 * self.strides[0]]
        self.size_divisibility = size_divisibility or self.backbone.size_divisibility

        if fusion_type not in ("relation", "concat"):
            raise ValueError(f"VIS_STG.GRAPH.FUSION_TYPE must be 'relation' or 'concat', got {fusion_type!r}")
        self.relation_fusion = fusion and fusion_type == "relation"
        if fusion and fusion_type == "concat" and concat_fusion is None:
            raise ValueError("GRAPH.FUSION_TYPE 'concat' needs a concat_fusion module")
        # Registration order = state-dict order of the layout before the association registry.
        self.concat_fusion = concat_fusion if fusion and fusion_type == "concat" else None
        self.graph, self.det_head, self.mask_branch, self.mask_head = graph, det_head, mask_branch, mask_head
        self.controller, self.kernel_warp = controller, kernel_warp
        for a in associations:  # under their historic names (edge_classifier, embed_head, offset_head)
            self.add_module(a.module_name, a)
        self.cues = [a.cue for a in associations]
        if baseline not in ("", "per_frame", "iou"):
            raise ValueError(f"VIS_STG.INFERENCE.BASELINE must be '', 'per_frame' or 'iou', got {baseline!r}")
        self.baseline = baseline
        self.test_cue = {"": association, "per_frame": None, "iou": "box_iou"}[baseline]
        if self.test_cue is not None and self.test_cue not in self.cues:
            raise ValueError(f"the {self.test_cue!r} association is used at test time but was not built")
        if (self.relation_fusion or any(a.reads_edges for a in associations)) and self.graph is None:
            raise ValueError("relation fusion and edge association need the graph")
        self.decode = decode
        self.track = track
        if video_score not in ("mean", "coverage"):
            raise ValueError(f"VIS_STG.TRACK.VIDEO_SCORE must be 'mean' or 'coverage', got {video_score!r}")
        self.video_score = video_score
        self.loss_weights, self.det_loss = tuple(loss_weights), det_loss
        self.mask_pos_radius, self.mask_out_stride, self.fuse_test = mask_pos_radius, mask_head.out_stride, fuse_test
        self.mask_threshold, self.max_tracks, self.classes_per_track = mask_threshold, max_tracks, classes_per_track
        # Per-level constants on the device (no tensor built from a list on every call).
        self.register_buffer("level_strides", torch.tensor(self.strides, dtype=torch.float32), False)
        self.register_buffer("level_coord_norm", torch.tensor(self.coord_norm, dtype=torch.float32), False)
        self.register_buffer("pixel_mean", torch.tensor(list(pixel_mean)).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(list(pixel_std)).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg: CfgNode) -> Dict[str, Any]:
        return vis_stg_arguments(cfg)  # the modules and settings of cfg.MODEL.VIS_STG (:mod:`.build`)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def association(self, cue: str) -> Association:
        """The built association cue ``cue``."""
        return getattr(self, association_class(cue).module_name)

    # ------------------------------------------------------------------------------------------------ common
    def preprocess(self, images: Sequence[torch.Tensor]) -> ImageList:
        """uint8 (3, h, w) images in INPUT.FORMAT -> normalised, padded ImageList."""
        images = [normalize_image(x, self.pixel_mean, self.pixel_std) for x in images]
        return ImageList.from_tensors(images, self.size_divisibility)

    def extract_features(self, images: torch.Tensor) -> Tuple[List[torch.Tensor], Optional[torch.Tensor]]:
        """The ``IN_FEATURES`` levels and the mask branch's finer level (``MASK.IN_FEATURE`` of the FPN or
        ``MASK.DETAIL_FEATURE`` of its bottom-up network, read in the same forward pass; None without)."""
        if not self.mask_detail_feature:
            features = self.backbone(images)
            return [features[f] for f in self.in_features], features.get(self.mask_in_feature)
        features, bottom_up = forward_with_bottom_up(self.backbone, images)
        return [features[f] for f in self.in_features], bottom_up[self.mask_detail_feature]

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
        locations = (cells.float() + 0.5) * self.level_strides[level][:, None]
        norm = self.level_coord_norm[level if kernel_level is None else kernel_level]
        return self.mask_head(mask_feats, kernels, locations, batch_idx, norm)

    # ---------------------------------------------------------------------------------------------- training
    def forward(self, batched_inputs: List[Dict[str, Any]]):
        """Training: dict of losses (eq. (7)). Eval: one ``run_online_inference`` result per video."""
        if not self.training:
            return [
                run_online_inference(self, video, self.max_tracks, self.classes_per_track) for video in batched_inputs
            ]
        for x in batched_inputs:
            if len(x["image"]) != 2:
                raise ValueError(f"VisSTG trains on frame pairs (INPUT.SAMPLING_FRAME_NUM 2), got {len(x['image'])}")
        b = len(batched_inputs)
        images = self.preprocess([x["image"][0] for x in batched_inputs] + [x["image"][1] for x in batched_inputs])
        features, fine = self.extract_features(images.tensor)
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
            min_overlap=self.det_loss.min_overlap,
        )
        targets_k, targets_t = assign_centers(inst_k, **assign), assign_centers(inst_t, **assign)

        # §3.2: the GT boxes of frame k are the reference nodes (same order as targets_k).
        heads_in, edges = list(feats_t), None
        if self.graph is not None:
            ref_boxes = [x.gt_boxes.tensor for x in inst_k]
            ref_nodes = self.graph.encode_nodes(feats_k, ref_boxes)
            centers = torch.cat([(r[:, :2] + r[:, 2:]) / 2 for r in ref_boxes])
            fused, edges = self.graph(ref_nodes, centers, targets_k.batch_idx, feats_t)
            heads_in = fused if self.relation_fusion else heads_in
        if self.concat_fusion is not None:  # Table 2 "Concat": frame k plays F_{t-1}
            heads_in = self.concat_fusion(feats_t, feats_k)

        det_out_t = self.det_head(heads_in)
        pair = PairInputs(
            heads_in, feats_k, feats_t, edges, targets_k, targets_t, shapes, self.strides, self.level_strides,
            det_out_t[0], *((None, None) if fine is None else (fine[:b], fine[b:])),
        )  # fmt: skip
        weight_det, weight_mask, weight_association = self.loss_weights
        losses = detection_losses(det_out_t, targets_t, self.det_loss, weight_det)
        if self.det_loss.ref_frame_loss:
            ref = detection_losses(self.det_head(feats_k), targets_k, self.det_loss, weight_det)
            losses.update({k + "_ref": v for k, v in ref.items()})
        mask_modules = (self.controller, self.mask_branch, self.kernel_warp, self.predict_masks)
        padded = tuple(images.tensor.shape[-2:])
        masks = segmentation_losses(
            pair, inst_k, inst_t, padded, *mask_modules, self.mask_out_stride, self.mask_pos_radius, weight_mask
        )
        losses.update(masks)
        for cue in self.cues:  # λ3 · each trained association's loss (eq. (6) for the edge classifier)
            losses.update({k: weight_association * v for k, v in self.association(cue).training_losses(pair).items()})
        return losses

    # --------------------------------------------------------------------------------------------- inference
    def init_video_state(self) -> VideoState:
        return VideoState()

    def video_diagnostics(self, state: VideoState) -> Dict[str, int]:
        """What the detection caps dropped in this video (:meth:`.state.VideoState.diagnostics`);
        ``projects.modeling.online`` puts it in the video's output, the evaluator sums it into ``metrics.json``."""
        return state.diagnostics()

    def finalize_video(self, state: VideoState, tracks: Dict[int, Any]) -> None:
        """Video-level track scores (``TRACK.VIDEO_SCORE``); the class stays the default score-weighted vote
        (a track is single-class anyway: class-mismatched edges are pruned, §3.5)."""
        if self.video_score == "coverage":
            for track in tracks.values():
                track.score = float(sum(track.frame_scores)) / max(state.num_frames, 1)

    def _frame_features(
        self, frame: Dict[str, Any], state: VideoState
    ) -> Tuple[torch.Tensor, Tuple[int, int], List[torch.Tensor], Optional[torch.Tensor]]:
        """Normalise and pad one frame (as ``preprocess``, with integer padding: :func:`~projects.modeling.online.
        pad_frame`), run the backbone; a new input size resets the frame-to-frame context. Returns (1, 3, H_pad,
        W_pad), (h, w), the ``IN_FEATURES`` levels and the mask branch's finer level (or None)."""
        image = normalize_image(frame["image"], self.pixel_mean, self.pixel_std)
        h, w = image.shape[-2:]
        x = pad_frame(image, self.size_divisibility)
        features, fine = self.extract_features(x)
        if state.input_shape != tuple(x.shape[-2:]):
            state.reset_frame_context()
        return x, (h, w), features, fine

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

        No host synchronisation on the device until the end (:mod:`.online_step`): the frame's outputs, the
        size of the next reference set and the fixed-point iterations' convergence flag come back in one copy;
        a frame whose iterations did not converge is recomputed exactly. Returns ``Instances`` on the CPU."""
        t = int(frame["frame_idx"])
        state.num_frames = max(state.num_frames, t + 1)
        images, image_size, features, fine = self._frame_features(frame, state)
        output_size = (int(frame["height"]), int(frame["width"]))
        model = not self.baseline  # the baselines: plain heads, no graph / fusion / warp / memory
        refs = self._reference_instances(state)
        prev = state.prev_features if model else None
        heads_in, edges = features, None
        if model and refs is not None and self.graph is not None:
            nms = self.track.sender_nms
            senders = message_senders(refs.boxes, refs.scores, nms) if nms > 0 else None
            fused, edges = self.graph.forward_online(refs.nodes, refs.centers, features, senders)
            heads_in = fused if self.relation_fusion else features
        if self.concat_fusion is not None and prev is not None:
            heads_in = self.concat_fusion(features, prev)
        association = None if self.test_cue is None else self.association(self.test_cue)
        heads = FrameHeads(
            det=self.det_head(heads_in),
            thetas=self.controller(heads_in),
            mask_feats=self.mask_branch(heads_in[0], fine),
            cue_maps=association.frame_maps(heads_in, prev) if association is not None and model else None,
        )
        warp = None
        if model and self.kernel_warp is not None and self.fuse_test and state.prev_thetas is not None:
            prev_thetas, prev_features = state.prev_thetas, state.prev_features

            def warp(level: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
                return self.kernel_warp.warp_at_cells(prev_thetas, prev_features, features, level, cells)

        # The baselines keep every detection as the next frame's reference, and no memory.
        track = self.track if model else replace(self.track, ref_score_thresh=-float("inf"), memory_frames=0)
        for iters in (self.decode.fixed_point_iters, EXACT):  # EXACT: a conflict chain longer than the iterations
            out = track_frame(
                heads, features, refs, edges, association, self.predict_masks, warp, state.next_track_id, t,
                self.strides, self.level_strides, self.decode, track, iters,
            )  # fmt: skip
            host, counts = frame_to_host(
                out.dets, out.track_ids, out.mask_probs, out.counts, image_size, output_size, self.mask_out_stride,
                self.mask_threshold,
            )  # fmt: skip
            if counts[3]:  # converged
                break
        state.count_dropped(*counts[4:6])
        state.next_track_id, state.refs = out.next_track_id, out.refs[slice(0, counts[1])]
        state.pending_nodes = counts[2] if model else 0
        if model:
            state.prev_features, state.prev_thetas = features, heads.thetas
        state.input_shape = tuple(images.shape[-2:])
        return host
