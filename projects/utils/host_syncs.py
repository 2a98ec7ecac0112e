"""Counting host-device synchronisations of a callable with the torch profiler.

On a GPU every op below blocks the host until the device has caught up (a scalar or a data-dependent shape
must be read back). A CPU trace sees the same ops, so the count measured on CPU is the count a GPU run pays,
except for explicit ``.cpu()`` / ``.tolist()`` copies (``aten::_to_copy``, not counted here) that
``torch.cuda.set_sync_debug_mode("warn")`` reports on a GPU.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Dict, Tuple

from torch.profiler import ProfilerActivity, profile

__all__ = ["SYNC_OPS", "count_host_syncs"]

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
