"""RGNN-VIS meta-architecture: ResNet-FPN backbone + YOLACT segmenter (stage 1), appearance network + recurrent
GNN tracker (stage 2), and the online video inference of ``projects.modeling.online``.

Training input follows docs/interfaces.md: each element of ``batched_inputs`` is a clip with ``image`` (T x
uint8 (3, h, w)) and ``instances`` (T x Instances with gt_boxes, gt_classes, gt_masks, gt_ids). Stage 1 uses
single frames (``INPUT.SAMPLING_FRAME_NUM 1``, any T works); stage 2 uses clips of T frames (10 in the paper)
fed through the tracker exactly as at inference (§3.5).

Shapes: B clips, T frames, N track slots, M detection slots (padded), K+1 classes (background last), A
appearance dim, P tracks holding a detection this frame.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import ImageList, Instances
from torch import nn

from projects.modeling.bottom_up_tap import forward_with_bottom_up, shapes_with_bottom_up
from projects.modeling.online import VideoTrack, check_num_classes, run_online_inference, to_host

from .appearance import AppearanceNetwork
from .clip_targets import clip_training_frames
from .detector import YolactDetector
from .frame_outputs import check_release_switches, frame_masks, grid_logits_to_frame, track_confidence
from .heads import mask_logits
from .image_input import (
    channel_flip,
    is_image_batch,
    prepare_images,
    segment_images,
    training_images,
    warn_train_resize,
)
from .losses import MASK_LOSSES, tracker_clip_losses
from .segmenter import segmenter_size_divisibility
from .stage_weights import SEGMENTER_MODULES, STAGE_KEY, TRACKER_VERSION, TRACKER_VERSION_KEY, select_checkpoint_weights
from .track_state import FrameDetections, TrackState
from .tracker import RGNNTracker

__all__ = ["RGNNVIS", "SEGMENTER_MODULES", "STAGE_KEY", "TRACKER_VERSION_KEY", "grid_logits_to_frame"]
logger = logging.getLogger(__name__)


@META_ARCH_REGISTRY.register()
class RGNNVIS(nn.Module):
    """Learning Video Instance Segmentation with Recurrent Graph Neural Networks (Johnander et al.)."""

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        detector: YolactDetector,
        appearance: Optional[AppearanceNetwork],
        tracker: RGNNTracker,
        stage: int,
        pixel_mean: Tuple[float, ...],
        pixel_std: Tuple[float, ...],
        feature_dropout: float = 0.1,
        scoring: str = "learned",
        loss_weights: Dict[str, float],
        frame_decay: float = 0.8,
        det_match_iou: float = 0.5,
        mask_loss: str = "joint",
        late_object_class: str = "object",
        max_video_tracks: int = 100,
        classes_per_track: int = 1,
        test_resize: Sequence[int] = (),
        flip_channels: bool = False,
        train_resize: Sequence[int] = (),
    ):
        super().__init__()
        if stage not in (1, 2):
            raise ValueError(f"MODEL.RGNN.STAGE must be 1 or 2, got {stage}")
        if scoring not in ("learned", "average", "yolact_average"):
            raise ValueError(f"unknown scoring {scoring!r}; use 'learned', 'average' or 'yolact_average'")
        self.backbone, self.detector, self.appearance, self.tracker = backbone, detector, appearance, tracker
        self.stage, self.scoring = stage, scoring
        self.feature_dropout = nn.Dropout2d(feature_dropout)
        self.loss_weights, self.frame_decay, self.det_match_iou = loss_weights, frame_decay, det_match_iou
        if mask_loss not in MASK_LOSSES:
            raise ValueError(f"MODEL.RGNN.LOSS.MASK_LOSS must be one of {MASK_LOSSES}, got {mask_loss!r}")
        self.mask_loss = mask_loss
        if late_object_class not in ("object", "background"):
            raise ValueError(
                f"MODEL.RGNN.LOSS.LATE_OBJECT_CLASS must be 'object' or 'background', got {late_object_class!r}"
            )
        self.late_objects_background = late_object_class == "background"
        self.max_video_tracks, self.classes_per_track = max_video_tracks, classes_per_track
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        # Saved with every checkpoint so that stage 2 can tell a stage-1 checkpoint (take the segmenter only)
        # from its own (take everything); see vis_rgnn/stage_weights.py.
        self.register_buffer(STAGE_KEY, torch.tensor(stage, dtype=torch.long), True)
        # ... and the tracker layout its tracker weights belong to: stage 2 refuses older tracker weights.
        self.register_buffer(TRACKER_VERSION_KEY, torch.tensor(TRACKER_VERSION, dtype=torch.long), True)
        self.register_load_state_dict_pre_hook(select_checkpoint_weights)
        self.size_divisibility = segmenter_size_divisibility(backbone)
        if test_resize and len(test_resize) != 2:
            raise ValueError(f"MODEL.RGNN.TEST_RESIZE must be [] or [height, width], got {list(test_resize)}")
        if train_resize and len(train_resize) != 2:
            raise ValueError(f"MODEL.RGNN.TRAIN_RESIZE must be [] or [height, width], got {list(train_resize)}")
        self.test_resize, self.flip_channels, self.train_resize = tuple(test_resize), flip_channels, tuple(train_resize)
        if stage == 2:  # App. A.1: backbone and segmenter frozen, incl. BatchNorm statistics.
            for module in (self.backbone, self.detector):
                module.requires_grad_(False)
        else:  # stage 1 trains the segmenter only; the tracker / appearance net are not used by its losses
            for module in (self.appearance, self.tracker):
                if module is not None:
                    module.requires_grad_(False)

    @classmethod
    def from_config(cls, cfg):
        r = cfg.MODEL.RGNN
        check_num_classes(cfg.MODEL.NUM_CLASSES, "RGNNVIS")
        check_release_switches(r)
        warn_train_resize(cfg)
        backbone = build_backbone(cfg)
        if not hasattr(backbone, "bottom_up"):
            raise ValueError("RGNNVIS needs an FPN backbone exposing `bottom_up` (res4/res5 feed the appearance net)")
        detector = YolactDetector(cfg, shapes_with_bottom_up(backbone))
        bottom_up = backbone.bottom_up.output_shape()
        appearance = None
        if r.APPEARANCE.ENABLED:
            appearance = AppearanceNetwork(
                {f: bottom_up[f].channels for f in r.APPEARANCE.IN_FEATURES},
                r.APPEARANCE.CHANNELS,
                r.APPEARANCE.HIDDEN,
                r.DETECTION_DESCRIPTOR,
            )
        app_dim = appearance.out_dim if appearance else 0
        tracker = RGNNTracker(cfg, appearance_dim=app_dim, mask_stride=detector.mask_stride)
        scoring = r.SCORING
        if r.STAGE == 1:
            # The tracker is untrained in stage 1: evaluate the segmenter with the heuristic association,
            # averaged scoring and its own masks (a segmenter-only baseline).
            tracker.association, scoring = "heuristic", "average"
            logger.info("RGNN stage 1: inference uses heuristic association and average scoring")
        lo = r.LOSS
        return {
            "backbone": backbone,
            "detector": detector,
            "appearance": appearance,
            "tracker": tracker,
            "stage": r.STAGE,
            "pixel_mean": tuple(cfg.MODEL.PIXEL_MEAN),
            "pixel_std": tuple(cfg.MODEL.PIXEL_STD),
            "feature_dropout": r.FEATURE_DROPOUT,
            "scoring": scoring,
            "loss_weights": {
                "loss_class": lo.CLASS_WEIGHT,
                "loss_mask": lo.MASK_WEIGHT,
                "loss_match": lo.MATCH_WEIGHT,
                "loss_new_track": lo.NEW_TRACK_WEIGHT,
            },
            "frame_decay": lo.FRAME_DECAY,
            "det_match_iou": lo.DET_MATCH_IOU,
            "mask_loss": lo.MASK_LOSS,
            "late_object_class": lo.LATE_OBJECT_CLASS,
            "max_video_tracks": cfg.TEST.VIDEO.MAX_TRACKS,
            "classes_per_track": cfg.TEST.VIDEO.CLASSES_PER_TRACK,
            "test_resize": tuple(r.TEST_RESIZE),
            "flip_channels": channel_flip(cfg.INPUT.FORMAT, r.NETWORK_FORMAT),
            "train_resize": tuple(r.TRAIN_RESIZE),
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def train(self, mode: bool = True) -> RGNNVIS:
        super().train(mode)
        if self.stage == 2:  # frozen segmenter: its features are the test-time ones, so no feature dropout either
            self.backbone.eval()
            self.detector.eval()
            self.feature_dropout.eval()
        return self

    # ---------------------------------------------------------------------------------------------- features
    def preprocess(self, images: Sequence[torch.Tensor]) -> ImageList:
        """uint8 (3, h, w) frames in ``INPUT.FORMAT`` -> normalised, padded ImageList (``TEST_RESIZE`` and
        ``NETWORK_FORMAT`` applied, see vis_rgnn/image_input.py)."""
        resize = self.train_resize if self.training else self.test_resize
        return prepare_images(
            images, self.pixel_mean, self.pixel_std, self.size_divisibility, resize, self.flip_channels
        )

    def extract_features(self, images: ImageList) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """FPN maps (with the detector's ``PROTO_DETAIL_FEATURE`` level when set) and the bottom-up (ResNet) maps of
        the same forward pass, both after channel dropout."""
        fpn, bottom_up = forward_with_bottom_up(self.backbone, images.tensor)
        if self.detector.proto_detail_feature:  # the detector's input: FPN maps + this bottom-up level
            fpn[self.detector.proto_detail_feature] = bottom_up[self.detector.proto_detail_feature]
        drop = self.feature_dropout
        return {k: drop(v) for k, v in fpn.items()}, {k: drop(v) for k, v in bottom_up.items()}

    def describe(self, bottom_up: Dict[str, torch.Tensor], dets: List[Instances]) -> List[torch.Tensor]:
        """Appearance descriptors (M_i, A) per image; (M_i, 0) when the appearance model is disabled."""
        if self.appearance is None:
            return [d.scores.new_zeros(len(d), 0) for d in dets]
        return self.appearance(bottom_up, [d.pred_masks for d in dets], [d.valid for d in dets])

    def describe_background(self, bottom_up: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        """Whole-image descriptor (B, A) of every image, the empty track's appearance observation (the release's
        ``new_background``); None when the appearance model is disabled."""
        return None if self.appearance is None else self.appearance.image_descriptor(bottom_up)

    # ----------------------------------------------------------------------------------------------- forward
    def forward(self, batched_inputs: List[Dict[str, Any]]):
        if not self.training:
            if is_image_batch(batched_inputs):  # detectron2 image call: the segmenter alone (stage-1 output)
                return segment_images(self, batched_inputs)
            return [
                run_online_inference(self, video, self.max_video_tracks, self.classes_per_track)
                for video in batched_inputs
            ]
        if self.stage == 1:
            return self.forward_segmenter(batched_inputs)
        return self.forward_tracker(batched_inputs)

    def forward_segmenter(self, batched_inputs: List[Dict[str, Any]]) -> Dict[str, torch.Tensor]:
        """Stage 1: every sampled frame is an independent training image (App. A.1)."""
        frames, instances = training_images(batched_inputs, self.train_resize)
        gt = [inst.to(self.device) for inst in instances]
        images = self.preprocess(frames)
        fpn, _ = self.extract_features(images)
        return self.detector(fpn, images.image_sizes, gt, input_size=tuple(images.tensor.shape[-2:]))

    def forward_tracker(self, batched_inputs: List[Dict[str, Any]]) -> Dict[str, torch.Tensor]:
        """Stage 2 (§3.5): run the frozen segmenter on all B x T frames, then the tracker frame by frame."""
        b_size, length = len(batched_inputs), len(batched_inputs[0]["image"])
        if any(len(v["image"]) != length for v in batched_inputs):
            raise ValueError("stage-2 clips in a batch must have the same number of frames")
        frames, instances = training_images(batched_inputs, self.train_resize)  # video-major
        gts = [[inst.to(self.device) for inst in instances[b * length : (b + 1) * length]] for b in range(b_size)]
        images = self.preprocess(frames)
        with torch.no_grad():
            fpn, bottom_up = self.extract_features(images)
            dets = self.detector(fpn, images.image_sizes, input_size=tuple(images.tensor.shape[-2:]))
        appearance = self.describe(bottom_up, dets)
        frames_t, identities_t, targets_t = clip_training_frames(
            dets,
            appearance,
            images.image_sizes,
            gts,
            self.det_match_iou,
            self.detector.mask_stride,
            self.describe_background(bottom_up),
            pixel_masks=self.mask_loss == "release",
            late_object_class=self.tracker.num_classes if self.late_objects_background else None,
        )
        with torch.autocast(self.device.type, enabled=False):  # the recurrent tracker runs in float32
            frames_t = [f.float32() for f in frames_t]
            return tracker_clip_losses(
                self.tracker, frames_t, identities_t, targets_t, self.frame_decay, self.loss_weights, self.mask_loss
            )

    # -------------------------------------------------------------------------------------- online inference
    def init_video_state(self) -> Dict[str, Any]:
        """Track memory of one video, and the latest class probabilities of every track id for the scoring:
        ``class_probs`` (capacity + 1, K+1) on the device (last row: a sink for free slots) and ``num_ids``, the
        number of ids given so far, known on the host from each frame's output copy."""
        return {"tracks": self.tracker.init_state(1, self.device), "class_probs": None, "num_ids": 0}

    @torch.no_grad()
    def step(self, frame: Dict[str, Any], state: Dict[str, Any]) -> Instances:
        """One frame of online inference (docs/interfaces.md). Returns Instances of size (height, width) with
        track_ids, scores, pred_classes and bool pred_masks, one pixel belonging to at most one track.

        Runs on the device without host synchronisation except reading the number of tracks that hold a
        detection (it sizes the masks) and one batched copy of the frame's outputs to the host at the end; the
        returned Instances are on the CPU."""
        out_h, out_w = int(frame["height"]), int(frame["width"])
        images = self.preprocess([frame["image"]])  # exactly the image call's preprocessing
        fpn, bottom_up = self.extract_features(images)
        dets = self.detector(fpn, images.image_sizes, input_size=tuple(images.tensor.shape[-2:]))
        fd = FrameDetections.from_instances(
            dets, self.describe(bottom_up, dets), images.image_sizes, self.describe_background(bottom_up)
        )
        tracks: TrackState = state["tracks"]
        with torch.autocast(self.device.type, enabled=False):  # the recurrent tracker runs in float32
            fd = fd.float32()
            out = self.tracker.step(tracks, fd)
        probs = out.class_logits[0].softmax(dim=-1)  # (N, K+1)
        n = probs.shape[0]
        if self.scoring == "yolact_average":  # sum of the class vectors of each track's detections, and a count
            held = torch.cat([fd.class_probs[0, out.mask_det], probs.new_ones(len(out.mask_det), 1)], dim=1)
            self._write_id_rows(state, "class_probs", tracks.ids[0, out.mask_index[:, 1]], None, held, n, True)
        else:
            self._write_id_rows(state, "class_probs", tracks.ids[0], tracks.alive[0], probs, n, False)

        slots = out.mask_index[:, 1]
        k = self.detector.num_classes
        if self.scoring == "learned":  # confidence max_c p(c), class argmax over the K classes
            scores, classes = track_confidence(probs[slots], k), probs[slots, :k].argmax(dim=1)
        else:  # the matched detection's confidence and class, averaged / voted by run_online_inference
            scores, classes = fd.scores[0, out.mask_det], fd.class_probs[0, out.mask_det, :k].argmax(dim=1)
        h, w = images.image_sizes[0]
        release_maps = self.detector.mask_scores == "release"  # score maps against a background of 10
        if self.stage == 1:  # untrained re-weighting CNN: paste the segmenter's own masks
            logits = fd.masks[0, out.mask_det] if release_maps else mask_logits(fd.masks[0, out.mask_det])
        else:
            logits = out.mask_logits
        masks = frame_masks(logits, self.detector.mask_stride, (h, w), (out_h, out_w), 10.0 * release_maps)
        return self._frame_to_host(state, (out_h, out_w), tracks.ids[0, slots], scores, classes, masks, tracks.next_id)

    @staticmethod
    def _write_id_rows(
        state: Dict[str, Any],
        key: str,
        ids: torch.Tensor,
        valid: Optional[torch.Tensor],
        values: torch.Tensor,
        bound: int,
        accumulate: bool,
    ) -> None:
        """Write (or add, ``accumulate``) ``values`` (P, C) to the rows ``ids`` (P,) of the per-track-id buffer
        ``state[key]``, on the device; rows where ``valid`` (P,) is False go to a sink row. Ids given this frame
        are < num_ids + ``bound`` (the number of slots), so the buffer is grown (on the host, from the known
        ``num_ids``) before it could overflow."""
        buf = state[key]
        capacity = 0 if buf is None else buf.shape[0] - 1
        if capacity < state["num_ids"] + bound:
            grown = values.new_zeros(max(2 * capacity, state["num_ids"] + bound, 64) + 1, values.shape[1])
            if buf is not None:
                grown[:capacity] = buf[:capacity]
            buf, capacity = grown, grown.shape[0] - 1
            state[key] = buf
        rows = ids if valid is None else torch.where(valid, ids, capacity)
        if accumulate:
            buf.index_add_(0, rows, values)
        else:
            buf.index_put_((rows,), values)

    @staticmethod
    def _frame_to_host(
        state: Dict[str, Any],
        size: Tuple[int, int],
        ids: torch.Tensor,
        scores: torch.Tensor,
        classes: torch.Tensor,
        masks: torch.Tensor,
        next_id: torch.Tensor,
    ) -> Instances:
        """The frame's outputs (P ids, classes, scores, (P, H, W) bool masks) and the video's next id on the host
        in one transfer (:func:`projects.modeling.online.to_host`); the next id goes to ``state["num_ids"]``."""
        ids_h, classes_h, scores_h, masks_h, next_h = to_host(
            [ids.long(), classes.long(), scores.float(), masks, next_id.long().reshape(1)]
        )
        state["num_ids"] = int(next_h.numpy()[0])  # a host value (numpy: no aten scalar read)
        result = Instances(size)
        result.track_ids, result.scores, result.pred_classes, result.pred_masks = ids_h, scores_h, classes_h, masks_h
        return result

    def video_diagnostics(self, state: Dict[str, Any]) -> Dict[str, int]:
        """What the ``MODEL.RGNN.MAX_TRACKS`` slot cap dropped in this video (new tracks that found no free slot;
        the release drops them too): ``frames_over_track_slots`` and ``tracks_over_track_slots``.
        ``projects.modeling.online`` puts it in the video's output, the evaluator sums it into ``metrics.json``."""
        tracks: TrackState = state["tracks"]
        counts = torch.stack([tracks.slot_full_frames.sum(), tracks.slot_dropped_tracks.sum()]).cpu()
        return {"frames_over_track_slots": int(counts[0]), "tracks_over_track_slots": int(counts[1])}

    def finalize_video(self, state: Dict[str, Any], tracks: Dict[int, VideoTrack]) -> None:
        """Learned scoring (§3.2; the release evaluator's results.json): from a track's last class probabilities,
        its class is the most probable of the K classes and its confidence ("our trust about whether the track is
        a true positive") that class's probability. ``SCORING yolact_average`` (Table 1 "Scoring via yolact
        average"): the mean of the class vectors of the track's detections, its best foreground class and that
        class's mean probability. With ``SCORING average`` (Table 1 "Scoring from [31]") the defaults (mean
        confidence, score-weighted vote) are kept.
        ``class_shares`` (``TEST.VIDEO.CLASSES_PER_TRACK``): each class's probability (learned) or mean probability
        (``yolact_average``) over the chosen class's."""
        if self.scoring == "average" or state["class_probs"] is None:
            return
        k = self.detector.num_classes
        probs = state["class_probs"][: state["num_ids"]].cpu()  # one copy per video
        if self.scoring == "yolact_average":
            fg = probs[:, :k] / probs[:, k + 1 :].clamp(min=1)
            score, category = fg.max(dim=1)
        else:
            fg = probs[:, :k]
            score = track_confidence(probs, k)
            category = fg.argmax(dim=1)
        shares = fg / fg.max(dim=1, keepdim=True).values.clamp(min=1e-12)
        for tid, track in tracks.items():
            if 0 <= tid < probs.shape[0]:
                track.score, track.category_id = float(score[tid]), int(category[tid])
                track.class_shares = dict(enumerate(shares[tid].tolist()))
