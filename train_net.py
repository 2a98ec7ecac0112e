#!/usr/bin/env python
"""Train / evaluate the video instance segmentation models of this project (VisSTG, RGNN-VIS).

    python train_net.py --config-file configs/vis_stg/synthetic_R18.yaml
    python train_net.py --config-file configs/vis_stg/synthetic_R18.yaml --eval-only MODEL.WEIGHTS out/model_final.pth
    python train_net.py --config-file CFG --dataset mydata_train=ann/train.json:frames/train \\
        DATASETS.TRAIN "('mydata_train',)"

``--dataset NAME=JSON:IMAGE_ROOT`` (repeatable) registers a YouTube-VIS-format dataset; its categories come from
the JSON and ``MODEL.NUM_CLASSES`` follows the first training dataset.
"""
import argparse
import logging
import os

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.evaluation import verify_results
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping
from detectron2.utils.logger import setup_logger

from projects.config import add_video_config
from projects.data import build_video_test_loader, build_video_train_loader, resolve_num_classes
from projects.data.cli import register_cli_datasets
from projects.data.model_metadata import CHECKPOINT_KEY, ModelMetadataCheckpointable, dataset_metadata, write_model_metadata
from projects.evaluation import YTVISEvaluator
from projects.modeling import add_oracle_config
from vis_rgnn.config import add_rgnn_config
from vis_stg.config import add_vis_stg_config


class Trainer(DefaultTrainer):
    """DefaultTrainer with video loaders, the YouTube-VIS evaluator and an optional Adam optimizer.

    Every checkpoint also stores the training class list (``"model_metadata"``) so inference needs no dataset.
    """

    def __init__(self, cfg):
        super().__init__(cfg)
        self.checkpointer.checkpointables[CHECKPOINT_KEY] = ModelMetadataCheckpointable(
            dataset_metadata(cfg.DATASETS.TRAIN[0])
        )

    @classmethod
    def build_train_loader(cls, cfg):
        return build_video_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        return build_video_test_loader(cfg, dataset_name)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
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
        return maybe_add_gradient_clipping(cfg, optim)(params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY)


def get_project_cfg():
    """detectron2's default config plus every key of this project (video data, both methods, oracle)."""
    cfg = get_cfg()
    add_video_config(cfg)
    add_vis_stg_config(cfg)
    add_rgnn_config(cfg)
    add_oracle_config(cfg)
    return cfg


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
        write_model_metadata(dataset_metadata(cfg.DATASETS.TRAIN[0]), cfg.OUTPUT_DIR)
    return cfg


def _rank() -> int:
    from detectron2.utils import comm

    return comm.get_rank()


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
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
        help="register a YouTube-VIS-format dataset (repeatable); use NAME in DATASETS.TRAIN/TEST",
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
