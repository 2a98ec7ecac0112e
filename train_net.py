#!/usr/bin/env python
"""Train / evaluate the video instance segmentation models of this project (VisSTG, RGNN-VIS).

    python train_net.py --config-file configs/vis_stg/synthetic_R18.yaml
    python train_net.py --config-file configs/vis_stg/synthetic_R18.yaml --eval-only MODEL.WEIGHTS out/model_final.pth
    python train_net.py --config-file CFG --dataset mydata_train=ann/train.json:frames/train \\
        DATASETS.TRAIN "('mydata_train',)"

``--dataset NAME=JSON:IMAGE_ROOT`` (repeatable) registers a YouTube-VIS-format dataset; its categories come from
the JSON and ``MODEL.NUM_CLASSES`` follows the first training dataset. ``--coco-dataset NAME=JSON:IMAGE_ROOT``
registers a COCO-format image dataset; with ``--eval-only`` a stage-1 RGNN-VIS / YOLACT model is evaluated on it
image by image with detectron2's COCOEvaluator (box and mask AP).
"""
import argparse
import json
import logging
import os
from typing import List

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import get_cfg
from detectron2.data import MetadataCatalog, build_detection_test_loader
from detectron2.data.datasets import register_coco_instances
from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.evaluation import COCOEvaluator, verify_results
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping
from detectron2.utils.logger import setup_logger

from projects.config import add_video_config
from projects.data import build_video_test_loader, build_video_train_loader, register_ytvis_instances, resolve_num_classes
from projects.evaluation import YTVISEvaluator
from projects.modeling import add_oracle_config
from vis_rgnn.config import add_rgnn_config
from vis_stg.config import add_vis_stg_config


class Trainer(DefaultTrainer):
    """DefaultTrainer with video loaders, the YouTube-VIS evaluator and an optional Adam optimizer."""

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
        return maybe_add_gradient_clipping(cfg, optim)(params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY)


def get_project_cfg():
    """detectron2's default config plus every key of this project (video data, both methods, oracle)."""
    cfg = get_cfg()
    add_video_config(cfg)
    add_vis_stg_config(cfg)
    add_rgnn_config(cfg)
    add_oracle_config(cfg)
    return cfg


def is_image_dataset(dataset_name: str) -> bool:
    """COCO-format image datasets (detectron2's ``evaluator_type`` "coco") are evaluated image by image."""
    return MetadataCatalog.get(dataset_name).get("evaluator_type", None) == "coco"


def register_cli_coco_datasets(specs: List[str]) -> None:
    """Register ``NAME=JSON:IMAGE_ROOT`` COCO-format image datasets given with ``--coco-dataset``."""
    for spec in specs or []:
        name, sep, paths = spec.partition("=")
        json_file, sep2, image_root = paths.rpartition(":")
        if not (sep and sep2 and name and json_file and image_root):
            raise argparse.ArgumentTypeError(f"--coco-dataset expects NAME=path/to/instances.json:path/to/images, got {spec!r}")
        register_coco_instances(name, {"thing_classes": _coco_category_names(json_file)}, json_file, image_root)


def _coco_category_names(json_file: str) -> List[str]:
    """Category names sorted by id, as detectron2's load_coco_json orders them (MODEL.NUM_CLASSES follows)."""
    try:
        with open(json_file) as f:
            categories = json.load(f)["categories"]
        return [c["name"] for c in sorted(categories, key=lambda c: c["id"])]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{json_file}: not a readable COCO instances JSON with 'categories' ({e!r})") from e


def register_cli_datasets(specs: List[str]) -> None:
    """Register ``NAME=JSON:IMAGE_ROOT`` datasets given on the command line."""
    for spec in specs or []:
        name, sep, paths = spec.partition("=")
        json_file, sep2, image_root = paths.rpartition(":")
        if not (sep and sep2 and name and json_file and image_root):
            raise argparse.ArgumentTypeError(f"--dataset expects NAME=path/to/annotations.json:path/to/images, got {spec!r}")
        register_ytvis_instances(name, json_file, image_root)


def setup(args):
    register_cli_datasets(args.dataset)
    register_cli_coco_datasets(getattr(args, "coco_dataset", []))
    cfg = get_project_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    resolve_num_classes(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    for name in ("projects", "vis_stg", "vis_rgnn"):
        setup_logger(output=cfg.OUTPUT_DIR, distributed_rank=_rank(), name=name)
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
    parser.add_argument(
        "--coco-dataset",
        action="append",
        default=[],
        metavar="NAME=JSON:IMAGE_ROOT",
        help="register a COCO-format image dataset (repeatable); --eval-only on it reports box / mask AP",
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
