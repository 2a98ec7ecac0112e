"""Config keys shared by every video model of this project (data sampling, class count, video testing)."""

from detectron2.config import CfgNode as CN


def add_video_config(cfg: CN) -> None:
    """Add the video keys to a detectron2 config (``add_<method>_config`` of both methods call it first; the
    complete config of the entry points is ``vis_config.get_project_cfg``).

    ``INPUT.SAMPLING_FRAME_NUM``: frames sampled per training video (1: single image, 2: reference/target pair,
    T: a clip). ``INPUT.SAMPLING_FRAME_RANGE``: for pairs, the maximum gap |t - k| between the frames.
    ``INPUT.SAMPLING_CONSECUTIVE``: for clips, take T consecutive *annotated* frames instead of random ones.
    ``MODEL.NUM_CLASSES``: -1 takes the number of categories of the first video dataset of ``DATASETS.TRAIN``
    (else of ``DATASETS.TEST``; image datasets are mapped to its classes); any other value must equal it
    (checked by :func:`projects.data.resolve_num_classes`).

    Idempotent: a second call leaves the config (and any values merged into it) unchanged.
    """
    if "VIDEO" in cfg.TEST:
        return
    cfg.MODEL.NUM_CLASSES = -1

    cfg.INPUT.SAMPLING_FRAME_NUM = 2
    cfg.INPUT.SAMPLING_FRAME_RANGE = 5
    cfg.INPUT.SAMPLING_CONSECUTIVE = False
    cfg.INPUT.SAMPLING_FRAME_SHUFFLE = False
    # Drop sampled frame sets in which no instance is visible in any frame (resampled instead).
    cfg.INPUT.MIN_VISIBLE_INSTANCES = 1
    # A missing/corrupt training frame: "skip" the sample with a warning (counted as data/skipped_samples) or "fail".
    cfg.INPUT.ON_BAD_FRAME = "skip"

    # "SGD" (detectron2's default), "ADAM" or "ADAMW" (RGNN stage 2 uses Adam).
    cfg.SOLVER.OPTIMIZER = "SGD"
    # A moving average of the weights (projects/engine/ema.py): evaluated during training, and the final model.
    cfg.SOLVER.EMA = CN()
    cfg.SOLVER.EMA.ENABLED = False
    cfg.SOLVER.EMA.DECAY = 0.999

    # Local protocol (projects/data/splits.py): videos held out by <stem>_holdout / removed from <stem>_train_sub;
    # -1 = the dataset's default (YouTube-VIS 2019: 200, 2021: 300, OVIS: 60, others: 10 %).
    cfg.DATASETS.HOLDOUT_SIZE = -1
    # One sampling weight per DATASETS.TRAIN entry: the share of training samples drawn from it (normalised);
    # empty = every video / image equally likely (plain concatenation).
    cfg.DATASETS.TRAIN_WEIGHTS = ()
    # Image datasets (COCO format) in DATASETS.TRAIN: JSON {source category name: video class name} or a shipped
    # map name (coco_to_ytvis_2019, coco_to_ytvis_2021, coco_to_ovis); unmapped categories are dropped.
    cfg.DATASETS.CATEGORY_MAP = ""

    # Pseudo-videos from images (projects/data/pseudo_video_mapper.py): every frame gets its own random zoom
    # (ratio of the source window to the image: <1 crops, >1 zooms out with zero padding), shift (fraction of
    # the image size) and horizontal flip, before the sample's common augmentation (resize, flip, crop).
    # Random scale, then centre-pad / random-crop every frame to SIZE (height, width), one draw per sample:
    # projects/data/scale_crop.py, the RGNN-VIS release's ScaleCropAugment (App. C.2). Replaces the training
    # ResizeShortestEdge (MIN_SIZE_TRAIN / MAX_SIZE_TRAIN unused); INPUT.RANDOM_FLIP still applies after it; objects
    # whose box centre leaves the frame are dropped from it. SCALE_RANGE: the factor s ~ U(low, high) relative to
    # the frame fitted into REFERENCE_SIZE (height, width; () = the frame's own size); the pad colour is
    # MODEL.PIXEL_MEAN. Defaults: the release's values (720p frames, s in 0.475-1.0, 480 x 864).
    cfg.INPUT.SCALE_CROP = CN()
    cfg.INPUT.SCALE_CROP.ENABLED = False
    cfg.INPUT.SCALE_CROP.SCALE_RANGE = (0.475, 1.0)
    cfg.INPUT.SCALE_CROP.SIZE = (480, 864)
    cfg.INPUT.SCALE_CROP.REFERENCE_SIZE = (720, 1280)

    cfg.INPUT.PSEUDO_VIDEO = CN()
    cfg.INPUT.PSEUDO_VIDEO.SCALE_RANGE = (0.8, 1.2)
    cfg.INPUT.PSEUDO_VIDEO.SHIFT_RANGE = (0.2, 0.2)
    cfg.INPUT.PSEUDO_VIDEO.FLIP_PROB = 0.0

    cfg.DATASETS.SYNTHETIC = CN()
    # Where synthetic_vis_{train,val} are generated on first use (relative to $DETECTRON2_DATASETS).
    cfg.DATASETS.SYNTHETIC.ROOT = "synthetic_vis"

    cfg.TEST.VIDEO = CN()
    # Mask binarisation threshold used when encoding predicted masks into RLE.
    cfg.TEST.VIDEO.MASK_THRESHOLD = 0.5
    # Keep at most this many tracks per video in the results (YouTube-VIS AP uses maxDets=100).
    cfg.TEST.VIDEO.MAX_TRACKS = 100
    # Report each track under its k best classes (same masks, each class with its own video-level score) in
    # the evaluation results; 1 = one class per track. projects/modeling/online.py VideoTrackAccumulator.finish.
    cfg.TEST.VIDEO.CLASSES_PER_TRACK = 1
