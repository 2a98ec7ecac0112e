"""``python -m projects.visualize RESULTS.json --dataset NAME|JSON:IMAGE_ROOT --out DIR [--gt]``

Draws every video of a YouTube-VIS results file over its dataset's frames, tracks coloured by track id as in
``demo/demo.py``: ``DIR/<video>.mp4`` (H.264), ``.gif`` and/or ``.png`` (a contact sheet of evenly spaced
frames). ``--gt`` puts the ground truth next to the predictions. ``--dataset`` is a registered dataset name
(``synthetic_vis_val``, ``ytvis_2019_train``, ...), ``JSON:IMAGE_ROOT`` or ``NAME=JSON:IMAGE_ROOT`` (as for
``train_net.py``). Bad input (unknown video ids, corrupt RLE, a mask of another size, a missing frame file) is
one line ``error: ...`` naming the file (exit 2); questionable input one ``warning: ...`` line each.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from projects.evaluation.cli_report import run_reporting

from .inputs import ground_truth_tracks, load_dataset, prediction_tracks, resolve_dataset
from .render import FORMATS, render_video


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m projects.visualize", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("results", help="YouTube-VIS results JSON: [{video_id, category_id, score, segmentations}]")
    p.add_argument("--dataset", required=True, metavar="NAME|JSON:IMAGE_ROOT", help="the results' dataset")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--gt", action="store_true", help="draw the ground truth next to the predictions")
    p.add_argument("--videos", nargs="+", type=int, metavar="ID", help="video ids to draw (default: all with results)")
    p.add_argument("--max-videos", type=int, default=10, help="draw at most this many videos (default 10; 0: all)")
    p.add_argument("--score-thresh", type=float, default=0.3, help="minimum video-level track score (default 0.3)")
    p.add_argument("--format", nargs="+", choices=FORMATS, default=["mp4", "png"], help="outputs (default mp4 png)")
    p.add_argument("--fps", type=float, default=6.0, help="frame rate of mp4/GIF (default 6: YouTube-VIS)")
    p.add_argument("--scale", type=float, default=1.0, help="output size relative to the frames (default 1)")
    p.add_argument("--sheet-frames", type=int, default=8, help="frames in the contact sheet (default 8)")
    p.add_argument("--sheet-cols", type=int, help="contact sheet columns (default 4, 2 with --gt)")
    p.add_argument("--traceback", action="store_true", help="show the full traceback of an error")
    return p


def run(args) -> int:
    json_file, image_root = resolve_dataset(args.dataset)
    data, videos = load_dataset(json_file, image_root)
    predictions = prediction_tracks(args.results, data, json_file)
    if args.videos:
        missing = [str(v) for v in args.videos if v not in videos]
        if missing:
            raise ValueError(f"{json_file}: --videos {', '.join(missing)} not among the dataset's video ids")
        ids = list(dict.fromkeys(args.videos))
    else:
        ids = [v for v in videos if v in predictions] or (list(videos) if args.gt else [])
        if not ids:
            raise ValueError(f"{args.results} holds no prediction: nothing to draw (--gt shows the ground truth)")
    if args.max_videos > 0 and len(ids) > args.max_videos:
        print(f"drawing {args.max_videos} of {len(ids)} videos (--max-videos)")
        ids = ids[: args.max_videos]
    gt = ground_truth_tracks(data, json_file, ids) if args.gt else {}
    for vid in ids:
        video = videos[vid]
        video.predictions, video.ground_truth = predictions.get(vid, []), gt.get(vid, [])
        shown = sum(p.score >= args.score_thresh for p in video.predictions)
        if video.predictions and not shown:
            best = max(p.score for p in video.predictions)
            print(
                f"warning: video {vid}: all {len(video.predictions)} tracks score below --score-thresh "
                f"{args.score_thresh:g} (best {best:.3f}): lower it to see them",
                file=sys.stderr,
            )
        paths = render_video(
            video,
            args.out,
            args.format,
            args.score_thresh,
            args.gt,
            args.fps,
            args.scale,
            args.sheet_frames,
            args.sheet_cols,
        )
        counts = f"{len(video.frames)} frames, {shown} of {len(video.predictions)} tracks"
        print(f"video {vid} ({counts}): {', '.join(paths)}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    return run_reporting(lambda: run(args), exit_code=2, reraise=args.traceback)


if __name__ == "__main__":
    sys.exit(main())
