"""Config keys of RGNN-VIS (Johnander et al., "Learning Video Instance Segmentation with Recurrent Graph Neural
Networks").

Defaults: the sizes of the paper's R50 model (Table 3, App. A). The tracker is the authors' public release (github
joakimjohnander/RGNNVIS, which produced the paper's numbers): its GNN inputs and blocks, new-track initialisation,
recurrent empty track, slot allocation, zeroed boxes of inactive tracks, appearance update, track confidence and
results writer are the only behaviour (docs/rgnn_release_port.md, "Ported"); this project's earlier alternatives
were removed, their keys are deprecated (:data:`DEPRECATED_KEYS`: an old config or checkpoint config.yaml still
loads, with detectron2's warning, and the key is ignored). Where this project still offers its own choice as a
switch (detector / input facts, detection score maps, descriptor, mask re-weighting inputs, mask loss), the default
is ours, used by the synthetic configs (configs/vis_rgnn/synthetic_R18_*.yaml), and the release's value is set by
configs/vis_rgnn/release_R50_ytvis19.yaml and Base-RGNN-YOLACT.yaml (the paper configs)."""

from detectron2.config import CfgNode as CN

from projects.config import add_video_config

# Switches between the release's tracker and this project's earlier alternatives, removed: the release's value is
# now the behaviour (docs/rgnn_release_port.md, "Ported").
DEPRECATED_KEYS = tuple(
    "MODEL.RGNN." + k
    for k in (
        "GNN.DET_EMPTY_GATE",
        "GNN.INPUTS",
        "GNN.RELEASE_BLOCKS",
        "EMPTY_TRACK",
        "INACTIVE_BOXES",
        "NEW_TRACK_APPEARANCE",
        "SLOT_EVICTION",
        "NEW_TRACK_ORDER",
        "NEW_TRACK_INIT",
        "APPEARANCE_UPDATE_RELEASE",
        "TRACK_CONFIDENCE",
        "RESULTS",
    )
)


def add_rgnn_config(cfg: CN) -> None:
    """Add :func:`projects.config.add_video_config`'s keys and ``MODEL.RGNN.*`` to ``cfg`` (idempotent).

    Thresholds called ``*_THRESHOLD`` on the tracker are
    logits (log-odds), as in the authors' release; the detector keeps a detection when the logit of its best
    foreground class probability reaches ``DETECTOR.SCORE_LOGIT_THRESH`` (``SCORE_MODE`` "logit"; the release's
    "log_prob" compares the log-probability).
    """
    add_video_config(cfg)
    if "RGNN" in cfg.MODEL:
        return
    for key in DEPRECATED_KEYS:
        cfg.register_deprecated_key(key)
    cfg.MODEL.RGNN = CN()
    r = cfg.MODEL.RGNN
    # 1: train backbone + YOLACT segmenter on single frames (App. A.1). 2: freeze them, incl. BatchNorm
    # statistics, and train appearance net, GNN, recurrent gate and heads on clips.
    r.STAGE = 1
    # Channel dropout on every backbone feature map before the segmenter and appearance net (App. A.2).
    r.FEATURE_DROPOUT = 0.1

    r.DETECTOR = CN()
    d = r.DETECTOR
    d.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]  # class/box/coefficient heads (YOLACT: P3-P7)
    d.PROTO_FEATURE = "p3"  # protonet input; prototypes come out at half its stride
    # A bottom-up level at the prototypes' stride (e.g. "res2", in MODEL.RESNETS.OUT_FEATURES) added to the
    # up-sampled protonet map through a 3x3 conv (not in YOLACT / the paper: boundary detail for small objects;
    # vis_rgnn/yolact_heads.py). "" = YOLACT's protonet.
    d.PROTO_DETAIL_FEATURE = ""
    d.NUM_PROTOTYPES = 32
    d.PROTO_CHANNELS = 256
    d.HEAD_CHANNELS = 256
    d.IOU_THRESHOLDS = [0.4, 0.5]  # anchor matching: < 0.4 background, >= 0.5 foreground
    d.BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
    d.NEG_POS_RATIO = 3  # online hard negative mining for the class loss
    d.MASKS_PER_IMAGE = 100  # positives whose masks are assembled for the mask loss
    d.PRE_NMS_TOPK = 200
    d.SCORE_LOGIT_THRESH = -3.5
    d.NMS_THRESH = 0.7
    d.MAX_DETECTIONS = 16
    d.CLASS_LOSS_WEIGHT = 1.0
    d.BOX_LOSS_WEIGHT = 1.5
    d.MASK_LOSS_WEIGHT = 6.125
    d.SEMANTIC_LOSS_WEIGHT = 1.0
    # "detectron2": detectron2's DefaultAnchorGenerator (centres at stride * (i + 0.5)). "yolact": YOLACT's
    # priors (vis_rgnn/yolact_anchors.py): centres at (i + 0.5) / map size of the input, width
    # size * sqrt(aspect ratio), ANCHOR_GENERATOR.ASPECT_RATIOS in YOLACT's order [1, 0.5, 2].
    d.ANCHOR_LAYOUT = "detectron2"
    d.SQUARE_ANCHORS = True  # YOLACT's use_square_anchors quirk: height = width (ANCHOR_LAYOUT yolact only)
    # ANCHOR_LAYOUT yolact: 0 = SIZES are pixels of the network input; > 0 = SIZES are relative to this many
    # pixels of each input side (the authors' RGNN-VIS release: 500, anchors non-square in pixels at 480 x 864).
    d.ANCHOR_REFERENCE_SIZE = 0.0
    # Detection filter of the tracker's detections: "logit" keeps a detection when the log-odds of its best
    # foreground probability >= SCORE_LOGIT_THRESH; "log_prob" (the release's RGNN._get_confident_detection_ids)
    # when its best foreground log-probability > SCORE_LOGIT_THRESH.
    d.SCORE_MODE = "logit"
    # "image": boxes clamped to [0, W] x [0, H], empty boxes dropped; "release": the release's project_boxes
    # (x1, y1 >= 0, x2 <= W - 1, y2 <= H - 1, no box dropped for its size).
    d.BOX_CLAMP = "image"
    # Single-image test-time post-processing (the detectron2 image call, COCOEvaluator): YOLACT's values.
    d.IMAGE_TEST = CN()
    d.IMAGE_TEST.CONF_THRESH = 0.05  # candidates: best foreground probability > this
    d.IMAGE_TEST.NMS_THRESH = 0.5  # per-class Fast NMS IoU
    d.IMAGE_TEST.TOP_K = 200  # candidates per class entering Fast NMS
    d.IMAGE_TEST.MAX_DETECTIONS = 100
    d.IMAGE_TEST.SECOND_THRESHOLD = False  # YOLACT's eval: kept boxes' own-class scores are not re-thresholded
    d.IMAGE_TEST.MASK_THRESH = 0.5
    d.IMAGE_TEST.CROP_PADDING = 1  # prototype-grid cells added around the box when cropping masks
    d.IMAGE_TEST.INTEGER_BOXES = True  # YOLACT truncates output boxes to integer pixels

    # Inference-only: resize each image to this (height, width) inside the model, bilinearly before the
    # normalisation (YOLACT's FastBaseTransform: 550 x 550); [] keeps the data loader's size.
    r.TEST_RESIZE = []
    # Channel order the backbone expects; "" = INPUT.FORMAT. "RGB" with INPUT.FORMAT "BGR" reverses the
    # channels after normalising with MODEL.PIXEL_MEAN / PIXEL_STD, which stay in INPUT.FORMAT order.
    r.NETWORK_FORMAT = ""

    r.APPEARANCE = CN()
    a = r.APPEARANCE
    a.ENABLED = True
    a.IN_FEATURES = ["res4", "res5"]
    a.CHANNELS = 256  # per input feature after the 1x1 conv; the descriptor has len(IN_FEATURES) * CHANNELS
    a.HIDDEN = 128  # residual block bottleneck
    # Initial value of the raw per-channel variances (variance = softplus of it) of a new track and of the empty
    # track, stored parameters as the release's init_var / init_var_background.
    a.INIT_LOG_VAR = -7.0
    # "learned": the release's update of mean and variance at rates predicted from the track embedding (§3.4,
    # vis_rgnn/appearance.py); "constant_variance": Table 1's ablation in the release's form, the variance rate is 0
    # so a track keeps its initial variance and only the mean is updated.
    a.UPDATE = "learned"

    r.GNN = CN()
    g = r.GNN
    g.DIM = 128
    g.GATE_HIDDEN = 32
    g.RESIDUAL_HIDDEN = 32
    g.NUM_BLOCKS = 2
    g.RESIDUAL_BLOCKS = True  # interleave residual blocks (App. B "No Interleaved Residual Blocks")
    g.LOGIT_BIAS_INIT = -2.1  # match / new-track logistic models

    r.GATING = "lstm"  # lstm (eq. 3) | simple (one gate + tanh, Table 1) | none (diverges in the paper)
    r.ASSOCIATION = "gnn"  # gnn | heuristic (MaskTrack R-CNN rule, Table 1 "Association from [31]")
    # learned (track embedding, §3.2) | average (mean confidence + majority vote: Table 1 "Scoring from [31]") |
    # yolact_average (mean of the detections' class vectors: Table 1 "Scoring via yolact average")
    r.SCORING = "learned"
    # Our addition (off = the paper): the scoring head's logits are added to the mean class log-probability of
    # the track's detections and the head starts at zero (see vis_rgnn.heads.TrackScoringHead).
    r.SCORING_EVIDENCE = False

    r.HEURISTIC = CN()
    h = r.HEURISTIC
    h.APPEARANCE_TEMPERATURE = 10.0  # scale of the cosine similarity before the softmax over tracks + new
    h.SCORE_WEIGHT = 1.0  # weight of log detection confidence
    h.IOU_WEIGHT = 2.0
    h.CLASS_WEIGHT = 10.0
    h.SCORE_THRESH = 0.1  # detections below this confidence are ignored by the heuristic

    # Track slots per video. New tracks take the lowest free slots in detection order (decreasing detection
    # score); a slot is never evicted nor re-used, so a new track that finds no free slot is dropped (the release;
    # vis_rgnn/slots.py).
    r.MAX_TRACKS = 24
    r.INIT_THRESHOLD = -2.0  # new-track logit needed to start a track at inference (HardAssigner)
    r.TRAIN_INIT_THRESHOLD = -2.0  # the same during stage-2 training
    # A track without a detection matching at or above this logit is inactive (the release's HardAssigner
    # track_acceptance_threshold).
    r.INACTIVE_THRESHOLD = -2.0
    r.MASK_EMBED_CHANNELS = 16  # mask re-weighting: Linear(DIM, 16) broadcast over the mask (App. A.2)
    r.MASK_HIDDEN_CHANNELS = 16
    # Our addition (off = the paper's head): the re-weighting CNN corrects the detection mask's logit (starts as
    # the segmenter's mask) instead of predicting the logits from scratch; see vis_rgnn.heads.MaskReweighting.
    # On in the synthetic configs, where it was measured to help.
    r.MASK_RESIDUAL = False

    r.LOSS = CN()
    lo = r.LOSS
    lo.DET_MATCH_IOU = 0.5  # detection <-> annotation assignment (§3.5)
    lo.CLASS_WEIGHT = 1.0
    lo.MASK_WEIGHT = 1.0
    # "joint": Lovász-softmax on the joint instance map, tracks competing for pixels (§3.5); "per_track": Lovász
    # hinge of every track's mask alone; "release": the release's per-image Lovász-softmax over the present classes
    # of [background 10, every slot's upsampled mask logits], targets from the clip's last identities
    # (vis_rgnn/losses.py).
    lo.MASK_LOSS = "joint"
    # Class target of a track whose object is not visible in the clip's first frame: "object" (its class; the
    # paper's words) or "background" (the release: ScaleCropAugment zeroes such objects' labels, so their tracks'
    # class loss is trained towards the background; vis_rgnn/clip_targets.py).
    lo.LATE_OBJECT_CLASS = "object"
    lo.MATCH_WEIGHT = 4.0
    lo.NEW_TRACK_WEIGHT = 1.0
    # Class loss weight of frame t in a T-frame clip: CLASS_WEIGHT x DECAY ** (T-1-t), normalised to mean 1, over
    # B x T (vis_rgnn/losses.py). With T = 10: 0.224 x 0.8 ** (9-t) per clip, 0.98 x the release's 0.285 x
    # 0.8 ** (10-t) (its VISObjective weight 1.5 is never applied).
    lo.FRAME_DECAY = 0.8

    _add_release_heads_config(r)

    if "OPTIMIZER" not in cfg.SOLVER:
        # detectron2's SOLVER has no optimizer choice; the paper trains both stages with Adam (§3.6).
        # train_net.py's build_optimizer reads it: "SGD" | "ADAM" | "ADAMW".
        cfg.SOLVER.OPTIMIZER = "SGD"


def _add_release_heads_config(r: CN) -> None:
    """Switches of the release's detection score maps, descriptor and mask re-weighting inputs (issue 21,
    docs/rgnn_release_port.md). Defaults keep this project's behaviour (measured to help on the synthetic
    held-out split); the release values are set in configs/vis_rgnn/release_R50_ytvis19.yaml and
    Base-RGNN-YOLACT.yaml. All are direct keys of MODEL.RGNN so that a config sets them in one block."""
    # Detection score maps handed to the tracker (``pred_masks``): "sigmoid_crop" = box-cropped mask
    # probabilities (ours); "release" = coefficients . prototypes (logits, no sigmoid, no crop) +
    # DETECTION_MASK_BOX_WEIGHT x the 0/1 box map sampled like the release's box_to_seg (RGNN.filter_detections).
    r.DETECTION_MASK_SCORES = "sigmoid_crop"
    r.DETECTION_MASK_BOX_WEIGHT = 10.0
    # Detection descriptor (DetectionDescriptorExtractor): "ours" = area mask pooling, 2-layer residual, L2
    # normalised; "release" = pooling with the softmax over [10, interpolated score maps] and the 3-layer residual
    # 512-128-128-512 with a final ReLU, not normalised (needs DETECTION_MASK_SCORES release).
    r.DETECTION_DESCRIPTOR = "ours"
    # Mask re-weighting CNN input: "ours" = [embedding, cropped mask probability, box mask]; "release" = [uncropped
    # detection logit map, 0/1 box map, embedding] (TrackModule.get_segscores) and the frame's instance map the
    # argmax over [constant 10 background, track score maps] (needs DETECTION_MASK_SCORES release).
    r.MASK_REWEIGHT_INPUT = "ours"
    # Training-time resize of every frame to (height, width), targets too ([] = the loader's size). The release's
    # frames come at 480 x 864 from its data augmentation (INPUT.SCALE_CROP; RGNN.forward asserts that size in
    # training), so the paper configs leave this []; a fixed resize after a varying MIN_SIZE_TRAIN cancels the
    # random scale (warned).
    r.TRAIN_RESIZE = []
