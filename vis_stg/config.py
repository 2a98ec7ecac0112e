"""Config keys of VisSTG (all under ``cfg.MODEL.VIS_STG``).

Defaults reproduce the paper's R50 YouTube-VIS setting (FPN P3–P7, 256 channels, 3 GNN iterations, window
sizes 9/7/5/3/1 cells, Δt = 7); the ablation switches of §4.3 are ``GRAPH.NUM_ITERS``, ``GRAPH.FUSION``,
``GRAPH.FUSION_TYPE``, ``TRACK.ASSOCIATION`` and ``WARP.ENABLED``. Where the paper leaves a detail open, the key's
comment names the choice (and the docstring of the module that uses it explains it).
"""

from detectron2.config import CfgNode as CN

from projects.config import add_video_config


def add_vis_stg_config(cfg: CN) -> None:
    """Add :func:`projects.config.add_video_config`'s keys and ``MODEL.VIS_STG`` to ``cfg`` (idempotent)."""
    add_video_config(cfg)
    if "VIS_STG" in cfg.MODEL:
        return
    cfg.MODEL.VIS_STG = CN()
    _C = cfg.MODEL.VIS_STG

    # FPN levels the graph and all heads run on (§4.2: "each output feature map from FPN").
    _C.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
    # Backbone "build_vis_stg_resnet_fpn_backbone" (vis_stg/backbone.py): P6/P7 from "res5" (C5, as detectron2's
    # RetinaNet, whose COCO checkpoint then loads completely) or "p5" (as FCOS / CondInst / AdelaiDet).
    _C.P6_P7_FROM = "res5"
    # Ground-truth objects go to level i when their size measure (input pixels) falls in [SOI[i-1], SOI[i]);
    # len = number of levels - 1 (FCOS/CondInst ranges).
    _C.SIZES_OF_INTEREST = [64, 128, 256, 512]
    # Size measure: "fcos" = max regression distance from the box centre = max(w, h) / 2 (FCOS, CondInst);
    # "max_side" = max(w, h) (puts every object one level coarser).
    _C.LEVEL_ASSIGNMENT = "fcos"
    # Pad input images to a multiple of this; 0 = the backbone's own size_divisibility.
    _C.SIZE_DIVISIBILITY = 0
    # Eq. (7): L = λ1 L_det + λ2 L_mask + λ3 L_edge (λ3 also weighs the embedding / offset baselines' losses).
    _C.LOSS_WEIGHT_DET = 1.0
    _C.LOSS_WEIGHT_MASK = 1.0
    _C.LOSS_WEIGHT_EDGE = 1.0

    # §3.2 spatial-temporal graph.
    _C.GRAPH = CN()
    # False = "No fusion" ablation: heads see F_t; the graph still runs to give edge features for tracking.
    _C.GRAPH.FUSION = True
    # How frame t's features are fused with the previous frame's (Table 2): "relation" = the graph of §3.2;
    # "concat" = a CNN on [F_t, F_{t-1}] (vis_stg/concat_fusion.py). With "concat" the graph is built only for
    # the edge association.
    _C.GRAPH.FUSION_TYPE = "relation"
    _C.GRAPH.NUM_ITERS = 3  # L of eq. (1)(2); Table 1
    # Window (cells, odd) around each reference instance centre, one per IN_FEATURES level.
    _C.GRAPH.WINDOW_SIZES = [9, 7, 5, 3, 1]
    # ROIAlign output size for the reference nodes, then "downsampled and flattened" to D by NODE_POOL:
    # "avg" (mean over the bins, stays in F's feature space so |h_i - h_j| compares like with like) or
    # "linear" (flatten R*R*D -> Linear -> D).
    _C.GRAPH.POOLER_RESOLUTION = 7
    _C.GRAPH.POOLER_SAMPLING_RATIO = 0
    _C.GRAPH.NODE_POOL = "avg"
    _C.GRAPH.HIDDEN_DIM = 256  # hidden width of the MLPs N_e, N_v
    # Eq. (2) sums messages over a node's edges ("sum"); "sum_scaled" is the sum times GRAPH.SUM_SCALE (eq. (2) with
    # N_v's output layer scaled); "mean" divides by the node degree (not eq. (2)). Default "mean", in the paper
    # configs too: at test time a pixel's degree (reference windows covering it) is ~3.5x that of training with GT
    # references (measured, vis_stg/README.md "Aggregation"), and the sum's message grows with it; the sum needs
    # GRAPH.TEST_SENDER_NMS (below), which removes most of that shift.
    _C.GRAPH.AGGREGATION = "mean"
    # "sum_scaled": the constant on the sum; 1/16 = the 99th percentile of a pixel's degree at test time (synthetic).
    _C.GRAPH.SUM_SCALE = 0.0625
    # Test time only: > 0 lets just one reference per object send messages into F_t (class-agnostic NMS at this
    # box IoU over the reference set, by score), as in training where the references are the GT objects; the
    # other references keep their edges for association. 0: every reference sends (the paper's graph).
    _C.GRAPH.TEST_SENDER_NMS = 0.0

    # §3.3 CenterNet detection head (shared over levels).
    _C.DET = CN()
    _C.DET.NUM_CONVS = 1  # 3x3 conv+ReLU layers before the 1x1 output conv of each branch
    _C.DET.CONV_DIM = 256
    _C.DET.PRIOR_PROB = 0.1  # heat-map bias init (CenterNet: -2.19)
    _C.DET.MIN_OVERLAP = 0.7  # gaussian radius (CornerNet/CenterNet)
    _C.DET.FOCAL_ALPHA = 2.0
    _C.DET.FOCAL_BETA = 4.0
    _C.DET.SIZE_WEIGHT = 0.1  # λ_size of eq. (3)
    _C.DET.OFFSET_WEIGHT = 1.0  # λ_offset of eq. (3)
    # Also train the plain (no graph) head on the reference frame, i.e. the head used on a video's first frame.
    _C.DET.REF_FRAME_LOSS = False

    # §3.4 CondInst segmentation.
    _C.MASK = CN()
    _C.MASK.BRANCH_NUM_CONVS = 0  # 3x3 convs before the 1x1 that gives F^d_t (paper: just the 1x1)
    _C.MASK.BRANCH_CONV_DIM = 128
    _C.MASK.BRANCH_CHANNELS = 8
    _C.MASK.CONTROLLER_NUM_CONVS = 1
    _C.MASK.CONTROLLER_CONV_DIM = 256
    _C.MASK.HEAD_CHANNELS = 8
    _C.MASK.HEAD_NUM_LAYERS = 3  # 3 layers of 8 channels + 2 coord channels = 169 parameters
    _C.MASK.OUT_STRIDE = 4
    # The mask branch's input: "" = the finest fused level F̂ (the paper, §3.4); a finer backbone level (e.g.
    # "p2", which the FPN must produce) = F̂ upsampled to that level plus the level itself (an FPN lateral sum),
    # so that F̂^d_t and the masks are at its stride (not in the paper: for small objects at low resolution).
    _C.MASK.IN_FEATURE = ""
    # Or a finer bottom-up (ResNet) level, e.g. "res2" (in MODEL.RESNETS.OUT_FEATURES): the branch runs at the
    # finest fused level as in the paper, its 8-channel output is bilinearly upsampled to that level and a 3x3
    # conv of the level is added, so F̂^d_t and the dynamic masks are at its stride (not in the paper: at stride 8
    # even a perfect per-cell mask reaches a mean IoU of 0.37 on the synthetic objects under 300 px; off in every
    # config: at the synthetic budget its 1.13x cost per iteration lost more than the finer masks gained,
    # docs/experiments/2026-12-07-synthetic-round-7.md). Exclusive with IN_FEATURE.
    _C.MASK.DETAIL_FEATURE = ""
    # Kernels are trained at the cells within this Chebyshev radius of each centre cell (0 = centre only). 1 = the
    # 3x3 cells around the centre, i.e. CondInst's positives (FCOS centre sampling, radius 1.5 strides), which
    # all train the mask loss there.
    _C.MASK.POS_RADIUS = 1
    # At test time average the masks of θ_t (eq. 4) and θ_warp (eq. 5); False = eq. (4) only.
    _C.MASK.FUSE_TEST = True

    # §3.4 kernel warping (mask-information propagation).
    _C.WARP = CN()
    _C.WARP.ENABLED = True
    _C.WARP.NUM_CONVS = 2  # 3x3 conv+ReLU layers on F_k - F_t before the 18-channel offset conv
    _C.WARP.CONV_DIM = 128
    _C.WARP.KERNEL_SIZE = 3
    # Deformable conv over θ_k per channel (a learned resampling, i.e. a warp) or mixing all 169 channels.
    _C.WARP.DEPTHWISE = True
    # "deform_conv2d" (torchvision) or "grid_sample" (same operator from bilinear sampling; faster on CPU).
    _C.WARP.IMPL = "deform_conv2d"

    # §3.5 tracking.
    _C.TRACK = CN()
    # Association cue (vis_stg/association.py registry): "edge" (eq. 6) | "embedding" (MaskTrack R-CNN baseline,
    # Table 2) | "offset" (CenterTrack-style centre displacement + box IoU, Table 2; vis_stg/offset_head.py,
    # trained in its own model) | "box_iou" (box IoU >= INFERENCE.BASELINE_IOU to the references, no learned cue).
    _C.TRACK.ASSOCIATION = "edge"
    # Build and train both association heads in one model, whatever ASSOCIATION says (which then only picks
    # the one used at test time, so the Table-2 association ablation is an eval-time switch on one network).
    # The embedding head reads detached features: its loss does not reach the shared network, whose gradients
    # stay those of eq. (7).
    _C.TRACK.JOINT_EMBEDDING = False
    _C.TRACK.PRUNE_CLASS_MISMATCH = True
    # Training edge set of eq. (6) (vis_stg/edge_targets.py): "predicted" = edges to the cells the detection head
    # predicts as instances (peaks >= TRAIN_SCORE_THRESH), pruned by the predicted class, as at test time (the
    # paper's E_prune); "gt" = edges to GT centre cells pruned by GT classes; "gt+predicted" = the union.
    _C.TRACK.TRAIN_EDGE_SET = "predicted"
    _C.TRACK.TRAIN_SCORE_THRESH = 0.05
    # A predicted cell within this Chebyshev distance of the centre cell of the reference's object is a positive.
    _C.TRACK.TRAIN_MATCH_RADIUS = 1
    _C.TRACK.MATCH_THRESH = 0.5  # edge probability for a match
    _C.TRACK.MEMORY_FRAMES = 7  # Δt of §3.6
    # Detections below this score are reported but only become reference nodes when they continue a track.
    # 0 = no gate, as in the paper (§3.5/§3.6: every unmatched detection starts a track and is a node of the next
    # graph); the synthetic config sets the 0.2 its held-out split chose.
    _C.TRACK.REF_SCORE_THRESH = 0.0
    # Video-level score of a track (the paper does not say): "mean" of its per-frame detection scores
    # (MaskTrack R-CNN) or "coverage" = sum of its per-frame scores / number of frames of the video (its mean
    # score over the whole video, 0 where absent), which ranks short fragments below tracks that span the video.
    _C.TRACK.VIDEO_SCORE = "mean"
    _C.TRACK.CLASSIFIER_HIDDEN_DIM = 128
    _C.TRACK.EMBED_DIM = 128
    _C.TRACK.EMBED_NUM_CONVS = 1
    _C.TRACK.OFFSET_NUM_CONVS = 1
    _C.TRACK.OFFSET_MIN_IOU = 0.5  # IoU of the displaced detection box with a reference box for a candidate

    _C.INFERENCE = CN()
    # Not in the paper (vis_stg/README.md "Paper vs configs"). Both caps run over all levels and classes (one
    # object can take a slot per class and level) and count what they drop (VisSTG.video_diagnostics, summed
    # into the evaluation's metrics.json): set them so that crowded scenes do not reach them.
    _C.INFERENCE.SCORE_THRESH = 0.05
    # 3x3 heat-map peaks kept per level and then over all levels before NMS.
    _C.INFERENCE.TOPK_CANDIDATES = 300
    _C.INFERENCE.NMS_THRESH = 0.6  # class-aware NMS across levels (FCOS / CondInst's 0.6); <= 0 disables
    # Detections per frame (YouTube-VIS keeps 100 predictions per video); also the fixed number of padded
    # detection slots of the sync-free online step.
    _C.INFERENCE.MAX_DETECTIONS = 100
    # Fixed-point iterations of the on-device greedy NMS and one-to-one matching (vis_stg/sync_free.py). The
    # result is exact whenever they converge (checked with the frame's single device-to-host copy); a frame
    # whose conflict chains are longer is recomputed exactly (and then pays one host sync per iteration).
    _C.INFERENCE.FIXED_POINT_ITERS = 6
    # Trivial baselines on the same trained weights (not part of the paper; for reporting): "per_frame" runs
    # the plain heads on F_t of every frame (no graph, no kernel warp) and reports every detection as its own
    # 1-frame track; "iou" does the same but links each detection to frame t-1's detections by greedy
    # one-to-one box IoU >= BASELINE_IOU within the class. "" = the model.
    _C.INFERENCE.BASELINE = ""
    _C.INFERENCE.BASELINE_IOU = 0.5
