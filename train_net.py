#!/usr/bin/env python
"""Train / evaluate the video instance segmentation models of this project (VisSTG, RGNN-VIS).

    python train_net.py --config-file configs/vis_stg/synthetic_R18.yaml
    python train_net.py --config-file configs/vis_stg/synthetic_R18.yaml --eval-only MODEL.WEIGHTS out/model_final.pth
    python train_net.py --config-file CFG --dataset mydata_train=ann/train.json:frames/train \\
        DATASETS.TRAIN "('mydata_train',)"

``--dataset NAME=JSON:IMAGE_ROOT`` (repeatable) registers a YouTube-VIS-format dataset (a ``NAME`` ending in
``_train`` also gets ``<stem>_train_sub`` / ``<stem>_holdout``) or a COCO-format image dataset; categories come
from the JSON and ``MODEL.NUM_CLASSES`` follows the first video dataset. With ``--eval-only`` a stage-1 RGNN-VIS /
YOLACT model is evaluated on a COCO-format
dataset image by image with detectron2's COCOEvaluator (box and mask AP).
"""

import argparse
import logging
import os
import weakref

import torch
from detectron2.data import MetadataCatalog, build_detection_test_loader
from detectron2.engine import (
    AMPTrainer,
    DefaultTrainer,
    SimpleTrainer,
    TrainerBase,
    default_argument_parser,
    default_setup,
    launch,
)
from detectron2.evaluation import COCOEvaluator, verify_results
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from projects.config import get_project_cfg
from projects.data import build_video_test_loader, build_video_train_loader, resolve_num_classes
from projects.data.cli import register_cli_datasets
from projects.data.model_metadata import (
    CHECKPOINT_KEY,
    ModelMetadataCheckpointable,
    training_metadata,
    write_model_metadata,
)
from projects.engine import FaultTolerantCheckpointer, FaultTolerantTrainerMixin
from projects.engine.amp import AutocastModel, autocast_for_inference, resolve_amp_dtype
from projects.engine.ddp import create_ddp_model
from projects.evaluation import YTVISEvaluator


class Trainer(FaultTolerantTrainerMixin, DefaultTrainer):
    """DefaultTrainer with video loaders, the YouTube-VIS evaluator, an optional Adam optimizer, DDP on CPU
    (gloo) as on GPUs (projects/engine/ddp.py) and mixed precision on both (projects/engine/amp.py).

    The mixin (projects/engine) adds atomic checkpoints, the corrupt-checkpoint fallback of ``--resume`` and the
    non-finite-loss / skipped-sample guard. Every checkpoint also stores the training class list
    (``"model_metadata"``), so inference needs no dataset."""

    def __init__(self, cfg):
        # DefaultTrainer.__init__ with two changes: the model is wrapped by projects.engine.create_ddp_model
        # (no device_ids for CPU modules) and SOLVER.AMP picks AMPTrainer on CUDA / bf16 autocast on the CPU.
        TrainerBase.__init__(self)
        logger = logging.getLogger("detectron2")
        if not logger.isEnabledFor(logging.INFO):
            setup_logger()
        cfg = DefaultTrainer.auto_scale_workers(cfg, comm.get_world_size())
        model = self.build_model(cfg)
        optimizer = self.build_optimizer(cfg, model)
        data_loader = self.build_train_loader(cfg)
        model = create_ddp_model(model, broadcast_buffers=False)
        self._trainer = self.build_train_loop(cfg, model, data_loader, optimizer)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer)
        self.checkpointer = FaultTolerantCheckpointer(model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self))
        self.checkpointer.checkpointables[CHECKPOINT_KEY] = ModelMetadataCheckpointable(training_metadata(cfg))
        self.start_iter = 0
        self.max_iter = cfg.SOLVER.MAX_ITER
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    @staticmethod
    def build_train_loop(cfg, model, data_loader, optimizer):
        """SimpleTrainer, or with ``SOLVER.AMP.ENABLED`` detectron2's AMPTrainer on CUDA (GradScaler) and a
        SimpleTrainer whose forward runs under bfloat16 autocast on the CPU."""
        if not cfg.SOLVER.AMP.ENABLED:
            return SimpleTrainer(model, data_loader, optimizer)
        device_type = torch.device(cfg.MODEL.DEVICE).type
        dtype = resolve_amp_dtype(cfg.SOLVER.AMP.get("DTYPE", "auto"), device_type)
        if device_type == "cuda":
            return AMPTrainer(model, data_loader, optimizer, precision=dtype)
        return SimpleTrainer(AutocastModel(model, device_type, dtype, training_only=True), data_loader, optimizer)

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """DefaultTrainer.test, under autocast when ``TEST.AMP.ENABLED``."""
        return super().test(cfg, autocast_for_inference(cfg, model), evaluators)

    @classmethod
    def build_train_loader(cls, cfg):
        return build_video_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        if is_image_dataset(dataset_name):  # COCO-format images: detectron2's loader and image call
            return build_detection_test_loader(cfg, dataset_name)
        return build_video_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        if is_image_dataset(dataset_name):  # box / mask AP of the single-image segmenter
            return COCOEvaluator(dataset_name, output_dir=output_folder)
        return YTVISEvaluator(dataset_name, output_dir=output_folder)

    @classmethod
    def build_optimizer(cls, cfg, model):
        name = cfg.SOLVER.OPTIMIZER.upper()
        if name == "SGD":
            return super().build_optimizer(cfg, model)
        params = get_default_optimizer_params(
            model, base_lr=cfg.SOLVER.BASE_LR, weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM
        )
        optim = {"ADAM": torch.optim.Adam, "ADAMW": torch.optim.AdamW}.get(name)
        if optim is None:
            raise ValueError(f"SOLVER.OPTIMIZER must be SGD, ADAM or ADAMW, got {cfg.SOLVER.OPTIMIZER!r}")
        return maybe_add_gradient_clipping(cfg, optim)(
            params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY
        )


def is_image_dataset(dataset_name: str) -> bool:
    """COCO-format image datasets (detectron2's ``evaluator_type`` "coco") are evaluated image by image."""
    return MetadataCatalog.get(dataset_name).get("evaluator_type", None) == "coco"


def setup(args):
    register_cli_datasets(args.dataset)
    cfg = get_project_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    resolve_num_classes(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    for name in ("projects", "vis_stg", "vis_rgnn"):
        setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=_rank(), name=name)
    if not args.eval_only and cfg.DATASETS.TRAIN and _rank() == 0:
        # The class names travel with the model (next to config.yaml): demo.py needs no --dataset.
        write_model_metadata(training_metadata(cfg), cfg.OUTPUT_DIR)
    return cfg


def _rank() -> int:
    return comm.get_rank()


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        FaultTolerantCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        res = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:
            raise NotImplementedError("test-time augmentation is not supported for video models")
        if res and _rank() == 0:
            verify_results(cfg, res)
        return res
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def build_parser() -> argparse.ArgumentParser:
    parser = default_argument_parser()
    parser.add_argument(
        "--dataset",
        action="append",
        default=[],
        metavar="NAME=JSON:IMAGE_ROOT",
        help="register a YouTube-VIS-format video dataset or a COCO-format image dataset (a training source) "
        "(repeatable); use NAME in DATASETS.TRAIN/TEST",
    )
    return parser


if __name__ == "__main__":
    args = build_parser().parse_args()
    logging.getLogger(__name__).info("Command Line Args: %s", args)
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
