"""Counting host-device synchronisations of a callable with the torch profiler.

On a GPU every op below blocks the host until the device has caught up (a scalar or a data-dependent shape
must be read back). A CPU trace sees the same ops, so the count measured on CPU is the count a GPU run pays,
except for explicit ``.cpu()`` / ``.tolist()`` copies (``aten::_to_copy``, not counted here) that
``torch.cuda.set_sync_debug_mode("warn")`` reports on a GPU.
"""

from __future__ import annotations

import warnings
from collections import Counter
from functools import partial
from typing import Any, Callable, Dict, List, Sequence, Tuple

import torch
from torch.profiler import ProfilerActivity, profile

__all__ = ["SYNC_OPS", "count_host_syncs", "count_cuda_sync_warnings", "online_step_syncs", "random_video"]

#: aten ops that read a device value back to the host (scalar reads, data-dependent output sizes).
SYNC_OPS = (
    "aten::item",
    "aten::_local_scalar_dense",
    "aten::is_nonzero",
    "aten::nonzero",
    "aten::unique",
    "aten::_unique",
    "aten::_unique2",
    "aten::unique_dim",
    "aten::unique_consecutive",
    "aten::masked_select",
)


def count_host_syncs(fn: Callable[[], Any]) -> Tuple[Any, Dict[str, int]]:
    """Run ``fn()`` under the profiler; return its result and ``{op name: calls}`` for every op of ``SYNC_OPS``
    that ran (``aten::item`` and the ``aten::_local_scalar_dense`` it calls are both listed, as the profiler
    records them; sum the values for the total)."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        result = fn()
    counts = Counter()
    for event in prof.events():
        if event.name in SYNC_OPS or event.name.startswith("aten::unique"):
            counts[event.name] += 1
    return result, dict(counts)


def count_cuda_sync_warnings(fn: Callable[[], Any]) -> Tuple[Any, int]:
    """Run ``fn()`` under ``torch.cuda.set_sync_debug_mode("warn")``; return its result and the number of
    "synchronizing CUDA operation" warnings it raised (what a GPU pays, ``.cpu()`` / ``.tolist()`` included)."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result = fn()
            torch.cuda.synchronize()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return result, sum("synchroniz" in str(w.message) for w in caught)


def random_video(frames: int, smoke: bool, seed: int = 0) -> List[torch.Tensor]:
    """``frames`` seeded random uint8 (3, H, W) frames at the host-sync benchmarks' size: 64×96 with ``smoke``,
    else 360×640."""
    h, w = (64, 96) if smoke else (360, 640)
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g) for _ in range(frames)]


def online_step_syncs(model: Any, state: Any, images: Sequence[torch.Tensor], device: str) -> Dict[str, Any]:
    """Host syncs of ``model.step`` (the online protocol) over ``images`` (uint8 (3, H, W) frames), frame 0 not
    counted (it has no reference). Each frame is stepped once; on CUDA the same call also counts the sync-debug
    warnings. Returns ``frames`` (counted), ``syncs_per_frame`` (max), ``mean_syncs_per_frame``, ``per_op`` (mean
    per frame), ``cuda_sync_warnings_per_frame`` (max, None off CUDA) and ``outputs`` (instances of the last
    frame)."""
    cuda = torch.device(device).type == "cuda"
    per_frame, ops, cuda_warnings, out = [], Counter(), [], None
    with torch.no_grad():
        for t, image in enumerate(images):
            h, w = image.shape[-2:]
            frame = {"image": image, "height": h, "width": w, "frame_idx": t}
            if t == 0:
                out = model.step(frame, state)
                continue
            step = partial(count_host_syncs, partial(model.step, frame, state))
            if cuda:
                (out, counts), warned = count_cuda_sync_warnings(step)
                cuda_warnings.append(warned)
            else:
                out, counts = step()
            per_frame.append(sum(counts.values()))
            ops.update(counts)
    if not per_frame:
        raise ValueError(f"need at least 2 frames (frame 0 is not counted), got {len(images)}")
    n = len(per_frame)
    return {
        "frames": n,
        "syncs_per_frame": max(per_frame),
        "mean_syncs_per_frame": sum(per_frame) / n,
        "per_op": {k: v / n for k, v in sorted(ops.items())},
        "cuda_sync_warnings_per_frame": max(cuda_warnings) if cuda_warnings else None,
        "outputs": len(out),
    }
