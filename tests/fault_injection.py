"""Run ``train_net.py`` with one injected fault (used by tests/test_faults_training.py through a subprocess).

FAULT=kill_at_iter:N       SIGKILL this process right after training iteration N
FAULT=kill_in_save:K       SIGKILL in the middle of writing the K-th checkpoint (half of its bytes written)
FAULT=nan_loss:N:NAME      the model's loss NAME becomes NaN at iteration N
PYTHONPATH=. python tests/fault_injection.py <train_net.py arguments>   # from the repository root
"""

import io
import os
import runpy
import signal
import sys

import torch
from detectron2.engine import HookBase
from detectron2.utils.events import get_event_storage

from projects.engine import trainer as engine_trainer
from projects.modeling.oracle import VideoGTOracle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _kill():
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _KillAtIter(HookBase):
    def __init__(self, iteration):
        self.iteration = iteration

    def after_step(self):
        if self.trainer.iter == self.iteration:
            _kill()


def _install(fault: str) -> None:
    kind, _, arg = fault.partition(":")
    if kind == "kill_at_iter":
        build_hooks = engine_trainer.FaultTolerantTrainerMixin.build_hooks

        def patched(self):
            return build_hooks(self) + [_KillAtIter(int(arg))]

        engine_trainer.FaultTolerantTrainerMixin.build_hooks = patched
    elif kind == "kill_in_save":
        target, calls = int(arg), [0]
        real_save = torch.save

        def save(obj, f, *args, **kwargs):
            calls[0] += 1
            if calls[0] != target or isinstance(f, (str, os.PathLike)):
                return real_save(obj, f, *args, **kwargs)
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            f.write(data[: len(data) // 2])
            f.flush()
            os.fsync(f.fileno())
            _kill()

        torch.save = save
    elif kind == "nan_loss":
        iteration, name = arg.split(":")
        forward = VideoGTOracle.forward

        def patched_forward(self, batched_inputs):
            out = forward(self, batched_inputs)
            if self.training and get_event_storage().iter == int(iteration):
                out[name] = out[name] * float("nan")
            return out

        VideoGTOracle.forward = patched_forward
    elif kind:
        raise SystemExit(f"unknown FAULT {fault!r}")


if __name__ == "__main__":
    _install(os.environ.get("FAULT", ""))
    sys.argv = [os.path.join(ROOT, "train_net.py")] + sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
