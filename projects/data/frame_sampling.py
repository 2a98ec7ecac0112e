"""Which frames of a video a training sample uses."""

from __future__ import annotations

import random
from typing import List


def sample_frame_indices(
    length: int, num_frames: int, frame_range: int, consecutive: bool, rng: random.Random
) -> List[int]:
    """Sorted frame indices for one training sample.

    - ``num_frames == 1``: one random frame.
    - ``consecutive``: ``num_frames`` consecutive (annotated) frames from a random start; a video shorter than
      the clip repeats its last frame (so every clip has the configured length).
    - otherwise: a random target frame t and ``num_frames - 1`` other frames within ``|k - t| < frame_range``
      (the paper's reference/target pair: gap smaller than 5). A 1-frame video pairs the frame with itself.
    """
    if length < 1:
        raise ValueError("cannot sample frames from an empty video")
    if num_frames < 1:
        raise ValueError(f"SAMPLING_FRAME_NUM must be >= 1, got {num_frames}")
    if num_frames == 1:
        return [rng.randrange(length)]
    if consecutive:
        start = rng.randrange(max(length - num_frames, 0) + 1)
        return [min(start + i, length - 1) for i in range(num_frames)]
    if frame_range < 2:
        raise ValueError(f"SAMPLING_FRAME_RANGE must be >= 2 to sample {num_frames} distinct frames")
    t = rng.randrange(length)
    window = [k for k in range(max(0, t - frame_range + 1), min(length, t + frame_range)) if k != t]
    if len(window) >= num_frames - 1:
        others = rng.sample(window, num_frames - 1)
    else:  # too short a video: fill up with repeats
        others = window + [rng.choice(window or [t]) for _ in range(num_frames - 1 - len(window))]
    return sorted([t] + others)
