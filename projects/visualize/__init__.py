"""Results viewer: a YouTube-VIS results.json drawn over its dataset's frames (mp4 / GIF / contact-sheet PNG).

``python -m projects.visualize RESULTS.json --dataset NAME|JSON:IMAGE_ROOT --out DIR [--gt]``; see
:mod:`projects.visualize.__main__` for the options. Tracks are coloured by track id exactly as ``demo/demo.py``
colours them.
"""

from .draw import contact_sheet, draw_tracks, side_by_side, track_color, with_header
from .inputs import Track, VideoView, ground_truth_tracks, load_dataset, prediction_tracks, resolve_dataset
from .render import FORMATS, draw_panel, render_frames, render_video, sheet_indices, visible_predictions

__all__ = [
    "FORMATS",
    "Track",
    "VideoView",
    "contact_sheet",
    "draw_panel",
    "draw_tracks",
    "ground_truth_tracks",
    "load_dataset",
    "prediction_tracks",
    "render_frames",
    "render_video",
    "resolve_dataset",
    "sheet_indices",
    "side_by_side",
    "track_color",
    "visible_predictions",
    "with_header",
]
