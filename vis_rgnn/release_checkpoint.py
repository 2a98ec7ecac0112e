"""Read the authors' RGNN-VIS checkpoints (github joakimjohnander/RGNNVIS, ``rgnnvis/engines/vis_trainer.py``)
without executing foreign pickles.

A release checkpoint is ``torch.save({"epoch", "net_type", "net": state_dict, "optimizer", "stats", "device"})``.
``stats`` holds the trainer's own classes (``rgnnvis.utils.stats.AverageMeter``): ``torch.load(weights_only=True)``
refuses the file, and a plain ``torch.load`` would import the release package (users do not have it) and call
whatever a tampered file's pickle names. :func:`read_release_checkpoint` unpickles with
:class:`RestrictedUnpickler`: only the few globals that rebuild tensors and plain containers are resolved; every
other global becomes an inert :class:`Placeholder` subclass that records its arguments and state and runs
nothing. The ``net`` entry is then checked to be a flat ``{str: Tensor}`` dict.
"""

from __future__ import annotations

import collections
import pickle
import types
from typing import Any, Dict, Tuple

import torch

__all__ = ["Placeholder", "RestrictedUnpickler", "read_release_checkpoint", "load_restricted"]

# Globals a torch.save'd state dict needs (storages are resolved by torch.load itself). Calling any of them only
# builds a tensor or a container.
_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._utils", "_rebuild_parameter_with_state"),
    ("collections", "OrderedDict"),
    ("torch", "Size"),
    ("torch", "device"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
}
for _dtype in ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool"):
    _ALLOWED.add(("torch", _dtype))


class Placeholder:
    """Stands in for a class of the release (or anything else) that is not whitelisted. Accepts any
    construction arguments and pickled state and keeps them, inertly, for inspection."""

    module: str = ""
    qualname: str = ""

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __reduce__(self):  # never re-pickle a stand-in as if it were the real object
        raise TypeError(f"placeholder for {self.module}.{self.qualname} cannot be pickled")

    def __repr__(self) -> str:
        return f"<placeholder {self.module}.{self.qualname}>"


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only :data:`_ALLOWED` globals; others become :class:`Placeholder` subclasses
    (recorded in ``self.replaced``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.replaced: set = set()

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        self.replaced.add(f"{module}.{name}")
        return type(name, (Placeholder,), {"module": module, "qualname": name})


def _restricted_load(file, **kwargs):
    return RestrictedUnpickler(file, **kwargs).load()


# torch.load(pickle_module=...) needs a module-like object with ``Unpickler`` and ``load``.
_restricted_pickle = types.SimpleNamespace(
    __name__="vis_rgnn.release_checkpoint.restricted_pickle",
    Unpickler=RestrictedUnpickler,
    load=_restricted_load,
    Pickler=pickle.Pickler,
    dump=pickle.dump,
)


def load_restricted(path: str) -> Any:
    """``torch.load`` of ``path`` on the CPU through :class:`RestrictedUnpickler` (tensors rebuilt by torch,
    nothing else executed)."""
    return torch.load(path, map_location="cpu", pickle_module=_restricted_pickle, weights_only=False)


def read_release_checkpoint(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Returns the ``net`` state dict of a release checkpoint and its other entries (``epoch``, ``net_type`` as
    stored; unknown objects as placeholders). A bare state dict (``{name: Tensor}``) is accepted as ``net``.
    Raises ValueError naming ``path`` when the file is not a torch file or has no tensor ``net`` dict."""
    try:
        obj = load_restricted(path)
    except Exception as e:  # corrupt / not a torch file
        raise ValueError(f"{path}: cannot be read as a torch checkpoint ({type(e).__name__}: {e})") from e
    if isinstance(obj, dict) and "net" in obj:
        net, meta = obj["net"], {k: v for k, v in obj.items() if k != "net"}
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        net, meta = obj, {}
    else:
        raise ValueError(f"{path}: not an RGNN-VIS release checkpoint (no 'net' state dict)")
    if not isinstance(net, (dict, collections.OrderedDict)):
        raise ValueError(f"{path}: 'net' is a {type(net).__name__}, expected a state dict")
    bad = [k for k, v in net.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path}: 'net' entries that are not tensors: {bad[:5]}")
    return dict(net), meta
