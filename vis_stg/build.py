"""``cfg.MODEL.VIS_STG`` → the explicit arguments of :class:`.meta_arch.VisSTG` (``VisSTG.from_config``).

Builds the modules in a fixed order, so that every module starts from the same weights for a given seed whatever
the ablation switches say (Table 2 of the paper: fusion, warp, association cue), and drops the ones unused.
"""

from __future__ import annotations

from typing import Any, Dict

from detectron2.config import CfgNode
from detectron2.modeling import build_backbone

from .association import association_class, build_association
from .concat_fusion import ConcatFusion
from .detection_head import CenterNetHead, DetectionLossSettings
from .graph import SpatialTemporalGraph
from .kernel_warp import KernelWarp
from .mask_head import Controller, DynamicMaskHead, MaskBranch
from .online_step import DecodeSettings, TrackSettings

__all__ = ["vis_stg_arguments"]


def vis_stg_arguments(cfg: CfgNode) -> Dict[str, Any]:
    """The keyword arguments of ``VisSTG.__init__`` for ``cfg`` (validates ``IN_FEATURES`` against the backbone)."""
    c = cfg.MODEL.VIS_STG
    g, m, w, t, i = c.GRAPH, c.MASK, c.WARP, c.TRACK, c.INFERENCE
    backbone = build_backbone(cfg)
    shapes = backbone.output_shape()
    missing = [f for f in c.IN_FEATURES if f not in shapes]
    if missing:
        raise ValueError(f"VIS_STG.IN_FEATURES {missing} not produced by the backbone ({sorted(shapes)})")
    strides = [shapes[f].stride for f in c.IN_FEATURES]
    dim = shapes[c.IN_FEATURES[0]].channels
    if any(shapes[f].channels != dim for f in c.IN_FEATURES):
        raise ValueError("all VIS_STG.IN_FEATURES must have the same number of channels")
    num_classes = int(cfg.MODEL.NUM_CLASSES)
    # TRACK.JOINT_EMBEDDING trains the edge classifier and the embedding head together (the latter on
    # detached features); TRACK.ASSOCIATION picks the one used at test time.
    cues = [t.ASSOCIATION] + (["edge", "embedding"] if t.JOINT_EMBEDDING else [])
    cues += ["box_iou"] if i.BASELINE == "iou" else []
    reads_edges = any(association_class(cue).reads_edges for cue in cues)
    mask_stride = strides[0]
    detail_channels = 0
    if m.DETAIL_FEATURE:
        bottom_up = backbone.bottom_up.output_shape() if hasattr(backbone, "bottom_up") else {}
        detail = bottom_up.get(m.DETAIL_FEATURE)
        if m.IN_FEATURE or detail is None or detail.stride >= strides[0]:
            raise ValueError(
                f"VIS_STG.MASK.DETAIL_FEATURE {m.DETAIL_FEATURE!r} must be a bottom-up output of the backbone "
                f"({sorted(bottom_up)}; MODEL.RESNETS.OUT_FEATURES) finer than {c.IN_FEATURES[0]!r}, with "
                f"MASK.IN_FEATURE empty (got {m.IN_FEATURE!r})"
            )
        mask_stride, detail_channels = detail.stride, detail.channels
    if m.IN_FEATURE:
        fine = shapes.get(m.IN_FEATURE)
        if fine is None or fine.channels != dim or fine.stride >= strides[0]:
            raise ValueError(
                f"VIS_STG.MASK.IN_FEATURE {m.IN_FEATURE!r} must be a backbone output ({sorted(shapes)}) finer than "
                f"{c.IN_FEATURES[0]!r} with its {dim} channels"
            )
        mask_stride = fine.stride
    mask_head = DynamicMaskHead(m.BRANCH_CHANNELS, m.HEAD_CHANNELS, m.HEAD_NUM_LAYERS, mask_stride, m.OUT_STRIDE)
    # Construction order (= initial weights for a SEED) as before the registry: the graph always (dropped
    # when unused), heads, warp, edge / embedding cues, concat fusion, the other cues. So every module starts
    # from the same weights whatever the ablation switches say.
    graph = SpatialTemporalGraph(
        dim, strides, g.WINDOW_SIZES, g.HIDDEN_DIM, g.NUM_ITERS, g.AGGREGATION, g.POOLER_RESOLUTION,
        g.POOLER_SAMPLING_RATIO, g.NODE_POOL, g.SUM_SCALE,
    )  # fmt: skip
    det_head = CenterNetHead(dim, max(num_classes, 1), c.DET.NUM_CONVS, c.DET.CONV_DIM, c.DET.PRIOR_PROB)
    mask_branch = MaskBranch(dim, m.BRANCH_CHANNELS, m.BRANCH_NUM_CONVS, m.BRANCH_CONV_DIM, detail_channels)
    controller = Controller(dim, mask_head.num_params, m.CONTROLLER_NUM_CONVS, m.CONTROLLER_CONV_DIM)
    warp = KernelWarp(dim, mask_head.num_params, w.NUM_CONVS, w.CONV_DIM, w.KERNEL_SIZE, w.DEPTHWISE, w.IMPL)
    associations = {cue: build_association(cue, cfg, dim) for cue in ("edge", "embedding") if cue in cues}
    concat = ConcatFusion(dim, g.HIDDEN_DIM) if g.FUSION and g.FUSION_TYPE == "concat" else None
    associations.update({cue: build_association(cue, cfg, dim) for cue in cues if cue not in associations})
    return {
        "backbone": backbone,
        "graph": graph if (g.FUSION and g.FUSION_TYPE == "relation") or reads_edges else None,
        "det_head": det_head,
        "mask_branch": mask_branch,
        "mask_head": mask_head,
        "controller": controller,
        "kernel_warp": warp if w.ENABLED else None,
        "associations": list(associations.values()),
        "concat_fusion": concat,
        "num_classes": num_classes,
        "in_features": list(c.IN_FEATURES),
        "mask_in_feature": m.IN_FEATURE,
        "mask_detail_feature": m.DETAIL_FEATURE,
        "sizes_of_interest": list(c.SIZES_OF_INTEREST),
        "level_assignment": c.LEVEL_ASSIGNMENT,
        "size_divisibility": c.SIZE_DIVISIBILITY,
        "fusion": g.FUSION,
        "fusion_type": g.FUSION_TYPE,
        "association": t.ASSOCIATION,
        "baseline": i.BASELINE,
        "decode": DecodeSettings.from_config(cfg),
        "track": TrackSettings.from_config(cfg),
        "video_score": t.VIDEO_SCORE,
        "loss_weights": (c.LOSS_WEIGHT_DET, c.LOSS_WEIGHT_MASK, c.LOSS_WEIGHT_EDGE),
        "det_loss": DetectionLossSettings.from_config(cfg),
        "mask_pos_radius": m.POS_RADIUS,
        "fuse_test": m.FUSE_TEST,
        "mask_threshold": cfg.TEST.VIDEO.MASK_THRESHOLD,
        "max_tracks": cfg.TEST.VIDEO.MAX_TRACKS,
        "classes_per_track": cfg.TEST.VIDEO.CLASSES_PER_TRACK,
        "pixel_mean": tuple(cfg.MODEL.PIXEL_MEAN),
        "pixel_std": tuple(cfg.MODEL.PIXEL_STD),
    }
