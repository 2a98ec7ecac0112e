#!/usr/bin/env python
"""Run a trained online VIS model on your own video and write a visualised mp4 + YouTube-VIS results JSON.

    python demo/demo.py --config-file configs/vis_stg/synthetic_R18.yaml --video-input in.mp4 \\
        --output out.mp4 --json out.json MODEL.WEIGHTS output/vis_stg/model_final.pth

``--video-input`` takes an mp4/avi/mkv file or a folder of frames; ``--webcam`` reads camera 0. Masks are coloured
by track id (stable over the video). If the run is interrupted or fails, the mp4 and JSON hold the frames done.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import List, Optional

import numpy as np
import tqdm
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import ColorMode, Visualizer

# Run as a script, sys.path[0] is demo/ (where "demo" would be this file): use the repository root instead.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from demo.predictor import VideoPredictor  # noqa: E402
from demo.video_io import Mp4Writer, VideoSource  # noqa: E402
from projects.modeling import VideoTrackAccumulator, finish_tracks  # noqa: E402

_PALETTE = colormap(rgb=True, maximum=1)


def track_color(track_id: int) -> np.ndarray:
    """A stable colour per track id (RGB in [0, 1])."""
    return _PALETTE[(int(track_id) * 7) % len(_PALETTE)]


def draw_frame(frame_bgr: np.ndarray, instances, metadata, threshold: float) -> np.ndarray:
    keep = instances.scores >= threshold
    inst = instances[keep]
    vis = Visualizer(frame_bgr[:, :, ::-1], metadata, instance_mode=ColorMode.IMAGE)
    if len(inst):
        names = metadata.get("thing_classes", None)
        labels = [
            f"#{int(i)} {names[int(c)] if names else int(c)} {float(s):.2f}"
            for i, c, s in zip(inst.track_ids, inst.pred_classes, inst.scores)
        ]
        vis.overlay_instances(
            masks=inst.pred_masks.numpy(), labels=labels, assigned_colors=[track_color(i) for i in inst.track_ids]
        )
    return vis.get_output().get_image()[:, :, ::-1]


def write_json(path: str, tracks: List[dict], metadata, video_id: int) -> None:
    """YouTube-VIS results (dataset category ids), written atomically so the file is always valid JSON."""
    contiguous_to_dataset = {v: k for k, v in metadata.get("thing_dataset_id_to_contiguous_id", {}).items()}
    results = [
        {
            "video_id": video_id,
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
    if output is None:
        return None
    if output.endswith(os.sep) or os.path.isdir(output):
        base = os.path.splitext(os.path.basename(os.path.normpath(video_input or "webcam")))[0]
        return os.path.join(output, base + ".mp4")
    return output


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--video-input", help="video file (mp4/avi/mkv) or a folder of frames")
    p.add_argument("--webcam", action="store_true", help="read from camera 0")
    p.add_argument("--output", help="output mp4 file, or a directory")
    p.add_argument("--json", help="write YouTube-VIS-style results JSON here")
    p.add_argument("--video-id", type=int, default=1, help="video_id used in the JSON")
    p.add_argument("--confidence-threshold", type=float, default=0.3, help="minimum score to draw a mask")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("opts", default=[], nargs=argparse.REMAINDER, help="config overrides, e.g. MODEL.WEIGHTS x.pth")
    return p


def setup_cfg(args):
    from projects.config import get_project_cfg

    cfg = get_project_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    from projects.data import resolve_num_classes

    resolve_num_classes(cfg)
    cfg.freeze()
    return cfg


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    if not args.video_input and not args.webcam:
        raise SystemExit("error: give --video-input PATH or --webcam")
    cfg = setup_cfg(args)
    source = VideoSource(args.video_input, webcam=args.webcam, max_frames=args.max_frames)
    predictor = VideoPredictor(cfg)
    out_file = output_path(args.output, args.video_input)
    writer = Mp4Writer(out_file, source.fps) if out_file else None
    acc = VideoTrackAccumulator()
    state = predictor.model.init_video_state()
    frames = iter(source)
    buffered: List[np.ndarray] = []

    def remember(it):
        for f in it:  # keep the raw frame for drawing (one at a time)
            buffered[:] = [f]
            yield f

    start = time.perf_counter()
    bar = tqdm.tqdm(total=len(source) or None, unit="frame", dynamic_ncols=True)
    try:
        for result in predictor.stream(remember(frames), state):
            acc.add_frame(result.frame_idx, result.instances)
            if writer is not None:
                writer.write(draw_frame(buffered[0], result.instances, predictor.metadata, args.confidence_threshold))
            bar.update(1)
            bar.set_postfix(fps=f"{bar.n / (time.perf_counter() - start):.1f}")
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        if args.json:
            write_json(args.json, finish_tracks(predictor.model, state, acc, cfg.TEST.VIDEO.MAX_TRACKS), predictor.metadata, args.video_id)
    if acc.frames_seen == 0:
        raise SystemExit(f"error: {args.video_input}: no frame could be read")
    fps = acc.frames_seen / (time.perf_counter() - start)
    print(f"processed {acc.frames_seen} frames at {fps:.2f} FPS; {len(acc.tracks)} tracks")
    if out_file:
        print(f"video: {out_file}")
    if args.json:
        print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
