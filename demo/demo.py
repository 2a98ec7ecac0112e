#!/usr/bin/env python
"""Run a trained online VIS model on your own video and write a visualised H.264 mp4 / GIF + results JSON.

    python demo/demo.py --config-file OUTPUT_DIR/config.yaml --video-input in.mp4 \\
        --output out.mp4 --json out.json MODEL.WEIGHTS OUTPUT_DIR/model_final.pth

``--video-input`` takes a video file (mp4/avi/mkv/...) or a folder of frames; ``--webcam`` reads camera 0. The
class names come with the trained model (or ``--dataset NAME=JSON:IMAGE_ROOT``, as for ``train_net.py``). At least
one of ``--output`` and ``--json`` is required. Masks are coloured by track id, labels never overlap
(``projects.utils.track_drawing``). A run that finds no track says so and which thresholds to try. Damaged input
(a truncated video, an undecodable frame file) is a warning and the frames that decode are processed; ``--strict``
makes it an error. If the run is interrupted (Ctrl-C, a failure), the video and JSON hold the frames done. Every
error is one line ``error: ...`` (``--traceback`` for details); exit status 2 when nothing useful was produced.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import List, Optional, Tuple

import numpy as np
import tqdm

from projects.data.cli import register_cli_datasets
from projects.engine.predictor import VideoPredictor
from projects.modeling import VideoTrackAccumulator, finish_tracks
from projects.utils.track_drawing import draw_tracks
from projects.utils.video_io import VideoSource, VideoWriter

# The config key that decides which detections become tracks, per meta-architecture (for the "no track" hint).
SCORE_KEYS = {
    "VisSTG": ("MODEL.VIS_STG.INFERENCE.SCORE_THRESH",),
    "RGNNVIS": ("MODEL.RGNN.DETECTOR.SCORE_LOGIT_THRESH", "MODEL.RGNN.INIT_THRESHOLD"),  # logits
}


def draw_frame(frame_bgr: np.ndarray, instances, metadata, threshold: float) -> Tuple[np.ndarray, int]:
    """The frame with the instances scoring >= ``threshold`` drawn (colour by track id, non-overlapping labels),
    and how many masks were drawn."""
    keep = (instances.scores >= threshold) & instances.pred_masks.flatten(1).any(dim=1)
    inst = instances[keep]
    names = metadata.get("thing_classes", None)
    classes = [names[c] if names else str(c) for c in inst.pred_classes.tolist()]
    image = draw_tracks(frame_bgr, inst.pred_masks.numpy(), inst.track_ids.tolist(), classes, inst.scores.tolist())
    return image, len(inst)


def no_track_hint(cfg) -> str:
    """What to try when a model finds nothing: the score threshold of its meta-architecture, the mask
    threshold, a longer training."""
    tries = []
    for key in SCORE_KEYS.get(cfg.MODEL.META_ARCHITECTURE, ()):
        value = cfg
        for part in key.split("."):
            value = value[part]
        tries.append(f"a lower {key} (now {value:g})")
    tries.append(f"a lower TEST.VIDEO.MASK_THRESHOLD (now {cfg.TEST.VIDEO.MASK_THRESHOLD:g})")
    tries.append("a longer training (SOLVER.MAX_ITER; a smoke model of a few iterations rarely finds anything)")
    return "try " + ", ".join(tries[:-1]) + " or " + tries[-1]


def write_json(path: str, tracks: List[dict], class_names: dict, video_id: int) -> None:
    """YouTube-VIS results (dataset category ids, plus each track's ``track_id``), written atomically (always
    valid JSON)."""
    contiguous_to_dataset = {v: k for k, v in class_names["thing_dataset_id_to_contiguous_id"].items()}
    results = [
        {
            "video_id": video_id,
            "track_id": t["track_id"],  # the id drawn in the video (projects.visualize colours by it)
            "category_id": contiguous_to_dataset.get(t["category_id"], t["category_id"] + 1),
            "score": t["score"],
            "segmentations": t["segmentations"],
        }
        for t in tracks
    ]
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f)
    os.replace(tmp, path)


def output_path(output: Optional[str], video_input: Optional[str]) -> Optional[str]:
    """``--output``: a file (.mp4/.mov/.mkv/.gif) or a directory (then ``<input name>.mp4`` inside it)."""
    if output is None:
        return None
    if output.endswith(os.sep) or os.path.isdir(output):
        base = os.path.splitext(os.path.basename(os.path.normpath(video_input or "webcam")))[0]
        return os.path.join(output, base + ".mp4")
    return output


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--video-input", help="video file (mp4/avi/mkv/...) or a folder of frames")
    p.add_argument("--webcam", action="store_true", help="read from camera 0")
    p.add_argument("--output", help="output video: .mp4/.mov/.mkv (H.264) or .gif, or a directory")
    p.add_argument("--json", help="write YouTube-VIS-style results JSON here")
    p.add_argument("--video-id", type=int, default=1, help="video_id used in the JSON")
    p.add_argument("--confidence-threshold", type=float, default=0.3, help="minimum score to draw a mask")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="NAME=JSON:IMAGE_ROOT",
        help="register a YouTube-VIS-format dataset; the first one's class names are used",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="fail on damaged input (truncated video, corrupt frame file) instead of warning",
    )
    p.add_argument("--traceback", action="store_true", help="show the full traceback of an error")
    p.add_argument("opts", default=[], nargs=argparse.REMAINDER, help="config overrides, e.g. MODEL.WEIGHTS x.pth")
    return p


def setup_cfg(args):
    """The project config with ``--config-file`` and the overrides merged (not frozen: the predictor sets
    ``MODEL.NUM_CLASSES`` from the model's class list)."""
    from vis_config import get_project_cfg

    if not os.path.isfile(args.config_file):
        raise FileNotFoundError(f"{args.config_file}: config file does not exist")
    cfg = get_project_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    return cfg


def _warn(message: str) -> None:
    tqdm.tqdm.write(f"warning: {message}", file=sys.stderr)


def check_args(args) -> None:
    """Refuse, before any work, a run that cannot produce anything useful."""
    if not args.video_input and not args.webcam:
        raise ValueError("give --video-input PATH or --webcam")
    flags = [o for o in args.opts if o.startswith("--")]
    if flags:  # argparse hands everything after the first override to the config
        raise ValueError(f"{flags[0]} comes after the config overrides: put demo flags before KEY VALUE pairs")
    if not args.output and not args.json:
        raise ValueError("nothing would be written: give --output FILE.mp4|FILE.gif|DIR and/or --json FILE")
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames must be at least 1 (got {args.max_frames}); leave it out for every frame")
    if not 0.0 <= args.confidence_threshold <= 1.0:
        raise ValueError(f"--confidence-threshold must be in [0, 1] (got {args.confidence_threshold})")


def run(args) -> int:
    check_args(args)
    datasets = register_cli_datasets(args.dataset)
    cfg = setup_cfg(args)
    source = VideoSource(
        args.video_input, webcam=args.webcam, max_frames=args.max_frames, strict=args.strict, on_warning=_warn
    )
    out_file = output_path(args.output, args.video_input)
    writer = VideoWriter(out_file, source.fps) if out_file else None  # checks the extension before the model
    predictor = VideoPredictor(cfg, dataset=datasets[0] if datasets else None)
    # Frame folders keep their length (a skipped frame has no mask); videos are as long as what decodes.
    acc = VideoTrackAccumulator(len(source) if source.files is not None else None)
    state = predictor.model.init_video_state()
    current: List = [None]  # (source index, raw frame) of the frame being processed, for drawing
    drawn = 0  # masks drawn over the whole video

    def frames():
        for index, frame in source.indexed():
            current[0] = (index, frame)
            yield frame

    start = time.perf_counter()
    bar = tqdm.tqdm(total=len(source) or None, unit="frame", dynamic_ncols=True)
    interrupted = False
    try:
        for result in predictor.stream(frames(), state):
            index, raw = current[0]
            acc.add_frame(index, result.instances)
            if writer is not None:
                image, n = draw_frame(raw, result.instances, predictor.metadata, args.confidence_threshold)
                writer.write(image)
                drawn += n
            bar.update(1)
            bar.set_postfix(fps=f"{bar.n / (time.perf_counter() - start):.1f}")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        source.close()
        if writer is not None:
            writer.close()
        if args.json:
            tracks = finish_tracks(predictor.model, state, acc, predictor.cfg.TEST.VIDEO.MAX_TRACKS)
            write_json(args.json, tracks, predictor.class_names, args.video_id)
    if source.decoded == 0:
        raise ValueError(f"{args.video_input}: no frame could be read")
    fps = source.decoded / (time.perf_counter() - start)
    status = "interrupted after" if interrupted else "processed"
    print(
        f"{status} {source.decoded} frames at {fps:.2f} FPS; {len(acc.tracks)} tracks"
        + (f"; {len(source.skipped)} frame files skipped" if source.skipped else "")
    )
    if out_file:
        print(f"video: {out_file} ({writer.frames} frames)")
    if args.json:
        print(f"results: {args.json}")
    if args.json and acc.over_max_tracks:
        cap = predictor.cfg.TEST.VIDEO.MAX_TRACKS
        _warn(
            f"{args.json} holds the {cap} best of {cap + acc.over_max_tracks} tracks: TEST.VIDEO.MAX_TRACKS {cap} "
            f"dropped {acc.over_max_tracks} (the video drew every track); raise it to keep them"
        )
    if not acc.tracks:
        _warn(f"no track in {source.decoded} frames: the model found no object here; " + no_track_hint(predictor.cfg))
    elif writer is not None and drawn == 0:
        _warn(
            f"the video shows no mask: none of the {len(acc.tracks)} tracks scored >= --confidence-threshold "
            f"{args.confidence_threshold:g} in any frame; try a lower --confidence-threshold"
        )
    return 130 if interrupted else 0


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    try:
        return run(args)
    except Exception as e:  # one clear line per error; --traceback for the details
        if args.traceback:
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, KeyError):  # yacs: "Non-existent config key: X"
            message = message.strip("'\"")
        print(f"error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
