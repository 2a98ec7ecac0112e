"""2-process CPU (gloo) training through train_net's Trainer for each synthetic config: VisSTG, RGNN stage 1,
RGNN stage 2 initialised from stage 1. After a few iterations the weights must be identical on both ranks
(DDP with find_unused_parameters=False raises if any trainable parameter is left out of an iteration)."""

import os

import pytest
import torch
from detectron2.engine import launch

from tests.train_cli import RGNN_NARROW, ROOT, run_cli
from tests.ytvis_fixtures import write_tiny_ytvis

TINY = [
    "INPUT.MIN_SIZE_TRAIN",
    "(64,)",
    "INPUT.MAX_SIZE_TRAIN",
    "96",
    "INPUT.MIN_SIZE_TEST",
    "64",
    "INPUT.MAX_SIZE_TEST",
    "96",
    "SOLVER.IMS_PER_BATCH",
    "2",
    "SOLVER.MAX_ITER",
    "3",
    "SOLVER.WARMUP_ITERS",
    "1",
    "DATALOADER.NUM_WORKERS",
    "0",
    "TEST.EVAL_PERIOD",
    "0",
    "MODEL.FPN.OUT_CHANNELS",
    "32",
]
STG_TINY = [
    "MODEL.VIS_STG.GRAPH.HIDDEN_DIM",
    "16",
    "MODEL.VIS_STG.DET.CONV_DIM",
    "16",
    "MODEL.VIS_STG.MASK.CONTROLLER_CONV_DIM",
    "16",
    "MODEL.VIS_STG.MASK.BRANCH_CONV_DIM",
    "16",
]


def train_worker(config_file, opts, datasets, out_dir):
    """One rank: train with train_net's Trainer, then save this rank's weights."""
    from detectron2.utils import comm

    import train_net

    torch.set_num_threads(1)
    args = train_net.build_parser().parse_args(
        ["--config-file", config_file, *sum((["--dataset", d] for d in datasets), []), *opts, "OUTPUT_DIR", out_dir]
    )
    cfg = train_net.setup(args)
    trainer = train_net.Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    model = trainer.model
    while hasattr(model, "module") or hasattr(model, "model"):  # DDP / AutocastModel (SOLVER.AMP on CPU)
        model = getattr(model, "module", None) or model.model
    torch.save(
        {k: v.detach().cpu() for k, v in model.state_dict().items()},
        os.path.join(out_dir, f"rank{comm.get_rank()}_weights.pth"),
    )
    comm.synchronize()


def run_two_processes(config, opts, datasets, out_dir, before=None):
    os.makedirs(out_dir, exist_ok=True)
    launch(train_worker, 2, dist_url="auto", args=(os.path.join(ROOT, config), opts, datasets, str(out_dir)))
    w0 = torch.load(os.path.join(out_dir, "rank0_weights.pth"))
    w1 = torch.load(os.path.join(out_dir, "rank1_weights.pth"))
    assert w0.keys() == w1.keys()
    different = [k for k in w0 if not torch.equal(w0[k], w1[k])]
    # BatchNorm running statistics are per-process, as in detectron2 on GPUs (broadcast_buffers=False; use
    # NORM "SyncBN" on GPUs to synchronise them); every parameter and every other buffer must agree.
    assert [k for k in different if not k.endswith((".running_mean", ".running_var"))] == [], different[:5]
    return w0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp_ytvis")
    json_file, image_root, _ = write_tiny_ytvis(str(root), num_videos=4, length=6, height=64, width=96)
    return [f"ddp_train={json_file}:{image_root}", f"ddp_val={json_file}:{image_root}"]


DATA = ["DATASETS.TRAIN", "('ddp_train',)", "DATASETS.TEST", "('ddp_val',)"]


def test_vis_stg_two_process_cpu_training(tiny, tmp_path):
    # with SOLVER.AMP (bf16 autocast on the CPU) through the Trainer's train loop
    w = run_two_processes(
        "configs/vis_stg/synthetic_R18.yaml", [*DATA, *TINY, *STG_TINY, "SOLVER.AMP.ENABLED", "True"], tiny, tmp_path
    )
    assert any(k.startswith("edge_classifier.") for k in w) and any(k.startswith("embed_head.") for k in w)
    assert (tmp_path / "model_final.pth").exists()


def test_rgnn_stage1_then_stage2_two_process_cpu_training(tiny, tmp_path):
    s1 = run_two_processes(
        "configs/vis_rgnn/synthetic_R18_stage1.yaml", [*DATA, *TINY, *RGNN_NARROW], tiny, tmp_path / "s1"
    )
    ckpt = str(tmp_path / "s1" / "model_final.pth")
    s2 = run_two_processes(
        "configs/vis_rgnn/synthetic_R18_stage2.yaml",
        [*DATA, *TINY, *RGNN_NARROW, "INPUT.SAMPLING_FRAME_NUM", "3", "MODEL.WEIGHTS", ckpt],
        tiny,
        tmp_path / "s2",
    )
    # stage 2 took the (frozen) segmenter from stage 1 and trained the tracker side
    seg = [k for k in s1 if k.startswith(("backbone.", "detector.")) and s1[k].is_floating_point()]
    assert seg and all(torch.equal(s1[k], s2[k]) for k in seg)
    assert not torch.equal(s1["tracker.scoring.cls.weight"], s2["tracker.scoring.cls.weight"])
    assert int(s2["rgnn_stage"]) == 2


def test_train_net_cli_two_processes_on_cpu(tiny, tmp_path):
    """The command of the issue: train_net.py --num-gpus 2 ... MODEL.DEVICE cpu (gloo) trains and evaluates."""
    # --dist-url auto: a free port (another job on the machine may hold detectron2's default one)
    args = ["--num-gpus", "2", "--dist-url", "auto", "--config-file", "configs/oracle/gt_oracle.yaml"]
    args += ["--dataset", tiny[0], "--dataset", tiny[1], *DATA, "INPUT.MIN_SIZE_TRAIN", "(32,)"]
    args += ["INPUT.MIN_SIZE_TEST", "32", "MODEL.DEVICE", "cpu", "SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "2"]
    proc = run_cli("train_net.py", [*args, "OUTPUT_DIR", tmp_path])
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-5000:]
    assert "DistributedDataParallel over 2 processes on cpu (gloo)" in log
    assert (tmp_path / "model_final.pth").exists() and "copypaste: AP" in log


def test_cpu_processes_share_the_cores(monkeypatch):
    """Several CPU training processes on one machine split its cores for intra-op threads (unless
    OMP_NUM_THREADS says otherwise); one process, or a CUDA model, keeps PyTorch's setting."""
    from detectron2.utils import comm

    from projects.engine.ddp import share_cpu_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(os, "cpu_count", lambda: 8)
        monkeypatch.setattr(comm, "get_local_size", lambda: 4)
        assert share_cpu_threads("cpu") == 2 == torch.get_num_threads()
        torch.set_num_threads(3)
        assert share_cpu_threads("cuda") == 3  # GPU training: untouched
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert share_cpu_threads("cpu") == 3  # the user's setting wins
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setattr(comm, "get_local_size", lambda: 1)
        assert share_cpu_threads("cpu") == 3  # one process: PyTorch's default stays
    finally:
        torch.set_num_threads(before)
