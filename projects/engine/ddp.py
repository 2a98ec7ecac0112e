"""DistributedDataParallel wrapping that works for CPU (gloo) and CUDA (NCCL) modules alike.

detectron2's ``create_ddp_model`` always passes ``device_ids=[local_rank]``, which DDP rejects for a module on
the CPU; :func:`create_ddp_model` passes ``device_ids`` only for a single-CUDA-device module. Everything else
(``broadcast_buffers=False``, ``find_unused_parameters=False``) is detectron2's default: every trainable
parameter must take part in every iteration's loss (both models keep theirs in the graph on empty batches).
"""

from __future__ import annotations

import logging
import os

import torch
from detectron2.utils import comm
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["create_ddp_model", "module_device", "share_cpu_threads"]
logger = logging.getLogger(__name__)


def module_device(model: nn.Module) -> torch.device:
    """The one device holding all parameters and buffers of ``model`` (ValueError if they are spread)."""
    devices = {t.device for t in list(model.parameters()) + list(model.buffers())}
    if len(devices) != 1:
        raise ValueError(f"DDP needs the model on one device, its tensors are on {sorted(map(str, devices))}")
    return devices.pop()


def create_ddp_model(model: nn.Module, *, broadcast_buffers: bool = False, **kwargs) -> nn.Module:
    """``model`` wrapped in DDP when there is more than one process, else ``model`` itself.

    CUDA module: ``device_ids = output_device = [its device]`` (the local rank's GPU, set by ``launch``). CPU
    module: no ``device_ids`` (the process group is gloo). ``kwargs`` go to DistributedDataParallel."""
    if comm.get_world_size() == 1:
        return model
    device = module_device(model)
    if device.type == "cuda":
        kwargs.setdefault("device_ids", [device.index if device.index is not None else comm.get_local_rank()])
    elif "device_ids" in kwargs:
        raise ValueError(f"device_ids={kwargs['device_ids']} given for a model on {device}; DDP takes none for CPU")
    backend = torch.distributed.get_backend()
    if device.type == "cpu" and backend != "gloo":
        raise RuntimeError(
            f"the model is on the CPU but the process group uses {backend}; CPU training needs gloo "
            "(run with CUDA_VISIBLE_DEVICES='' so that launch() picks gloo)"
        )
    logger.info(f"DistributedDataParallel over {comm.get_world_size()} processes on {device.type} ({backend})")
    return DistributedDataParallel(model, broadcast_buffers=broadcast_buffers, **kwargs)


def share_cpu_threads(device: str) -> int:
    """With several processes training on the CPU of one machine (``--num-gpus N`` with ``MODEL.DEVICE cpu``),
    give each process its share of the cores for intra-op threads: PyTorch's default (all cores per process)
    oversubscribes them, and OpenMP threads that wait for each other are slower than one thread each. Not
    touched when ``OMP_NUM_THREADS`` is set or with one process. Returns the threads of this process."""
    local = comm.get_local_size()
    if torch.device(device).type != "cpu" or local <= 1 or "OMP_NUM_THREADS" in os.environ:
        return torch.get_num_threads()
    threads = max(1, (os.cpu_count() or 1) // local)
    torch.set_num_threads(threads)
    logger.info(f"{local} processes on this machine's {os.cpu_count()} CPUs: {threads} intra-op thread(s) each")
    return threads
