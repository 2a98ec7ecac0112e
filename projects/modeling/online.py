"""Online (frame-by-frame) video inference shared by every model of this project.

A model that segments videos online implements the :class:`OnlineVideoModel` protocol:

- ``init_video_state() -> state``: a fresh state for a new video (tracks, memory, recurrent embeddings).
- ``step(frame, state) -> Instances``: process one frame. ``frame`` is
  ``{"image": uint8 tensor (3, h, w) in the model's input format, "height": H, "width": W, "frame_idx": t}``
  where (H, W) is the original frame size. Returns per-frame ``Instances`` of image size (H, W) with
  ``track_ids`` (int64, unique per video), ``scores`` (float), ``pred_classes`` (int64, contiguous 0..K-1)
  and ``pred_masks`` (bool, (N, H, W)). The state is updated in place.
- ``finalize_video(state, tracks) -> None`` (optional): re-score the finished tracks (e.g. RGNN's learned
  scoring). ``tracks`` maps track id -> :class:`VideoTrack`; set ``score`` / ``category_id`` on them.
- ``video_diagnostics(state) -> Dict[str, int | float]`` (optional): counts about the finished video (e.g. how
  often a cap dropped detections); :func:`run_online_inference` returns them as ``"diagnostics"``, which the
  evaluator logs per video and sums into ``metrics.json``. To them it adds, for every model, what
  ``TEST.VIDEO.MAX_TRACKS`` dropped: ``videos_over_max_tracks`` (1 if the cap dropped anything, else 0) and
  ``tracks_over_max_tracks`` (the results entries beyond the cap, :attr:`VideoTrackAccumulator.over_max_tracks`).

:func:`run_online_inference` turns those per-frame outputs into video-level tracks, which is what the
evaluator and the demo consume. Memory is O(#tracks × frames) RLE strings, never dense video masks: each
track keeps one compressed-RLE ``counts`` byte string per frame (the frame size is stored once per track), which
is ~4x smaller than a ``{"size", "counts"}`` dict per frame (``benchmarks/bench_long_video_memory.py``).

The per-frame plumbing every such model shares (VisSTG and RGNN-VIS use these, the model-specific parts stay in
their ``step``): :func:`check_num_classes` (the class count is resolved before the model is built),
:func:`normalize_image` / :func:`pad_frame` (a frame's normalisation and padding without reading a shape back
from the device) and :func:`to_host` (a frame's outputs in one device-to-host copy).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Protocol, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util
import torch
import torch.nn.functional as F
from detectron2.structures import Instances

from ..utils.masks import RLE

__all__ = [
    "OnlineVideoModel",
    "VideoTrack",
    "VideoTrackAccumulator",
    "iterate_online",
    "finish_tracks",
    "run_online_inference",
    "check_num_classes",
    "normalize_image",
    "pad_frame",
    "to_host",
]


class OnlineVideoModel(Protocol):
    def init_video_state(self) -> Any: ...

    def step(self, frame: Dict[str, Any], state: Any) -> Instances: ...


@dataclass
class VideoTrack:
    """One predicted object track: RLE masks of the frames where it was seen, per-frame scores/classes.

    ``masks`` maps frame index -> compressed RLE ``counts`` (bytes) of a ``size`` = [H, W] mask; :meth:`mask`
    gives the usual ``{"size", "counts": str}`` dict.
    """

    track_id: int
    masks: Dict[int, bytes] = field(default_factory=dict)
    size: Optional[List[int]] = None
    frame_scores: List[float] = field(default_factory=list)
    frame_classes: List[int] = field(default_factory=list)
    score: float = 0.0
    category_id: int = -1
    #: every class the track may also be reported as -> its evidence relative to ``category_id``'s (in [0, 1];
    #: reported with score ``score`` times it) when ``TEST.VIDEO.CLASSES_PER_TRACK`` > 1. Empty: the one class.
    class_shares: Dict[int, float] = field(default_factory=dict)

    def default_score_and_class(self) -> None:
        """Video-level score = mean per-frame score; class = majority vote weighted by score; ``class_shares``:
        each voted class's votes over the winner's."""
        if not self.frame_scores:
            return
        self.score = float(np.mean(self.frame_scores))
        votes: Counter = Counter()
        for c, s in zip(self.frame_classes, self.frame_scores):
            votes[c] += s
        best, top = votes.most_common(1)[0]
        self.category_id = int(best)
        self.class_shares = {int(c): v / top if top > 0 else 0.0 for c, v in votes.items()}

    def mask(self, t: int) -> Optional[RLE]:
        """Frame ``t``'s mask as compressed RLE with ``counts`` as str (``None``: no mask in that frame)."""
        counts = self.masks.get(t)
        return None if counts is None else {"size": list(self.size), "counts": counts.decode("ascii")}

    def as_result(self, length: int) -> Dict[str, Any]:
        """``{"track_id", "score", "category_id", "segmentations": [RLE | None] * length}``."""
        segmentations = [self.mask(t) for t in range(length)]
        return {
            "track_id": self.track_id,
            "score": self.score,
            "category_id": self.category_id,
            "segmentations": segmentations,
        }

    def class_hypotheses(self, classes_per_track: int) -> List[Tuple[float, int]]:
        """``(score, category_id)`` of the track's ``classes_per_track`` best classes: ``category_id`` with
        ``score`` first, then the other classes of ``class_shares`` (share > 0) by descending share, each with
        ``score`` times its share."""
        others = sorted(((v, c) for c, v in self.class_shares.items() if c != self.category_id and v > 0), reverse=True)
        return [(self.score, self.category_id)] + [(self.score * v, c) for v, c in others[: classes_per_track - 1]]


class VideoTrackAccumulator:
    """Collects per-frame ``Instances`` with ``track_ids`` into :class:`VideoTrack` objects.

    ``length`` may be ``None`` for a stream of unknown length (webcam); it is then the number of frames seen.
    """

    def __init__(self, length: Optional[int] = None):
        self.length = length
        self.frames_seen = 0
        self.tracks: Dict[int, VideoTrack] = {}
        #: results entries the last :meth:`finish` dropped beyond ``max_tracks`` (tracks when
        #: ``classes_per_track`` is 1, else (track, class) entries; the lowest-scored go first).
        self.over_max_tracks = 0

    def add_frame(self, frame_idx: int, instances: Instances) -> None:
        if frame_idx < 0 or (self.length is not None and frame_idx >= self.length):
            raise IndexError(f"frame index {frame_idx} outside a video of {self.length} frames")
        self.frames_seen = max(self.frames_seen, frame_idx + 1)
        if len(instances) == 0:
            return
        ids = instances.track_ids.tolist()
        scores = instances.scores.tolist()
        classes = instances.pred_classes.tolist()
        masks = instances.pred_masks.detach().to("cpu", torch.uint8).numpy()  # (N, H, W), one transfer per frame
        nonempty = masks.reshape(len(ids), -1).any(axis=1)
        rles = mask_util.encode(np.asfortranarray(masks.transpose(1, 2, 0)))  # one C call for all N masks
        for k, tid in enumerate(ids):
            if not nonempty[k]:
                continue  # an empty mask is "no mask in this frame" (None in the results)
            track = self.tracks.get(tid)
            if track is None:
                track = self.tracks[tid] = VideoTrack(track_id=int(tid), size=[int(v) for v in rles[k]["size"]])
            track.masks[frame_idx] = rles[k]["counts"]
            track.frame_scores.append(float(scores[k]))
            track.frame_classes.append(int(classes[k]))

    def finish(self, max_tracks: int = 100, classes_per_track: int = 1) -> List[Dict[str, Any]]:
        """Video-level results sorted by score, at most ``max_tracks``. With ``classes_per_track`` k > 1 a track
        is reported once per class of its k best (:meth:`VideoTrack.class_hypotheses`): the same masks under
        each class, the usual way a VIS model hedges an uncertain class under the per-category YouTube-VIS AP
        (e.g. the top-k (query, class) outputs of SeqFormer / IDOL / MinVIS)."""
        if classes_per_track < 1:
            raise ValueError(f"TEST.VIDEO.CLASSES_PER_TRACK must be >= 1, got {classes_per_track}")
        length = self.length if self.length is not None else self.frames_seen
        entries = [(s, c, t) for t in self.tracks.values() for s, c in t.class_hypotheses(classes_per_track)]
        entries.sort(key=lambda e: -e[0])
        self.over_max_tracks = max(len(entries) - max_tracks, 0)
        results = []
        for score, category, track in entries[:max_tracks]:
            result = track.as_result(length)
            result.update(score=score, category_id=category)
            results.append(result)
        return results


def iterate_online(
    model: Any, frames: Iterable[torch.Tensor], height: int, width: int, state: Any = None
) -> Iterator[Tuple[int, Instances]]:
    """Feed preprocessed frames ((3, h, w) tensors) to ``model.step`` one by one; yield ``(t, Instances)``.

    Holds nothing but the model's own online state, so memory stays flat on arbitrarily long inputs.
    Pass ``state`` to keep it (e.g. to call ``finalize_video`` afterwards); a fresh one is made otherwise.
    """
    state = model.init_video_state() if state is None else state
    with torch.no_grad():
        for t, image in enumerate(frames):
            yield t, model.step({"image": image, "height": height, "width": width, "frame_idx": t}, state)


def finish_tracks(
    model: Any, state: Any, acc: VideoTrackAccumulator, max_tracks: int = 100, classes_per_track: int = 1
) -> List[Dict[str, Any]]:
    """Video-level score/class for every track (default rule, then the model's ``finalize_video`` if any), then
    :meth:`VideoTrackAccumulator.finish`."""
    for track in acc.tracks.values():
        track.default_score_and_class()
    finalize = getattr(model, "finalize_video", None)
    if finalize is not None:
        finalize(state, acc.tracks)
    return acc.finish(max_tracks, classes_per_track)


def run_online_inference(
    model: Any, video: Dict[str, Any], max_tracks: int = 100, classes_per_track: int = 1
) -> Dict[str, Any]:
    """Run ``model`` online over one test-mapper video dict; return the video-level prediction.

    ``video`` holds ``image`` (a sequence of (3, h, w) tensors, possibly lazy), ``height``, ``width``,
    ``length`` and ``video_id``. Returns ``{"video_id", "height", "width", "length", "tracks": [
    {"track_id", "score", "category_id" (contiguous), "segmentations": [RLE | None] * length}], "diagnostics":
    {the model's ``video_diagnostics`` if any, "videos_over_max_tracks", "tracks_over_max_tracks"}}``.
    """
    length = int(video["length"])
    state = model.init_video_state()
    acc = VideoTrackAccumulator(length)
    for t, instances in iterate_online(model, video["image"], video["height"], video["width"], state):
        acc.add_frame(t, instances)
    result = {
        "video_id": video["video_id"],
        "height": video["height"],
        "width": video["width"],
        "length": length,
        "tracks": finish_tracks(model, state, acc, max_tracks, classes_per_track),
    }
    model_diagnostics = getattr(model, "video_diagnostics", None)
    diagnostics = dict(model_diagnostics(state)) if model_diagnostics is not None else {}
    diagnostics.update(videos_over_max_tracks=int(acc.over_max_tracks > 0), tracks_over_max_tracks=acc.over_max_tracks)
    result["diagnostics"] = diagnostics
    return result


# ------------------------------------------------------------------------------------------ per-frame plumbing
def check_num_classes(num_classes: int, model: str) -> int:
    """``num_classes`` as an int; a clear error naming ``model`` while ``MODEL.NUM_CLASSES`` is still unresolved
    (-1: follow the dataset) or otherwise not positive."""
    if int(num_classes) <= 0:
        raise ValueError(
            f"MODEL.NUM_CLASSES is {num_classes}: resolve it to the dataset's number of categories before building "
            f"{model} (train_net.py and the demo do this from the dataset or the trained model's class list)"
        )
    return int(num_classes)


def normalize_image(image: torch.Tensor, pixel_mean: torch.Tensor, pixel_std: torch.Tensor) -> torch.Tensor:
    """(3, h, w) image (uint8 or float, any device) -> float ``(x - PIXEL_MEAN) / PIXEL_STD`` on the device of
    ``pixel_mean`` / ``pixel_std`` ((3, 1, 1), the input's channel order)."""
    return (image.to(pixel_mean.device).float() - pixel_mean) / pixel_std


def pad_frame(image: torch.Tensor, size_divisibility: int) -> torch.Tensor:
    """(3, h, w) -> (1, 3, H_pad, W_pad): zeros at the bottom / right up to multiples of ``size_divisibility``
    (0 or 1: none), as ``ImageList.from_tensors`` pads one image, but from Python ints (``from_tensors`` reads the
    padded size back from a tensor), so the per-frame step reads nothing back from the device here."""
    h, w = image.shape[-2:]
    div = max(int(size_divisibility), 1)
    return F.pad(image, (0, -(-w // div) * div - w, 0, -(-h // div) * div - h))[None]


def to_host(tensors: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """The ``tensors`` (any dtypes and shapes, one device) on the CPU in one device-to-host copy: their bytes
    packed into one uint8 buffer, widest dtype first so that every field's offset stays aligned, copied, and
    viewed back. Returns CPU tensors of the same dtypes and shapes, in the given order (views of one buffer)."""
    order = sorted(range(len(tensors)), key=lambda i: -tensors[i].element_size())  # stable: ties keep their order
    flat = [tensors[i].contiguous().reshape(-1).view(torch.uint8) for i in order]
    packed = torch.cat(flat).cpu()
    out: List[torch.Tensor] = [packed] * len(tensors)
    for i, part in zip(order, torch.split(packed, [f.numel() for f in flat])):
        out[i] = part.view(tensors[i].dtype).view(tensors[i].shape)
    return out
