#!/usr/bin/env python
"""Train / evaluate the video instance segmentation models of this project (VisSTG, RGNN-VIS).

    python train_net.py --config-file configs/vis_stg/synthetic_R18.yaml
    python train_net.py --config-file configs/vis_stg/synthetic_R18.yaml --eval-only MODEL.WEIGHTS out/model_final.pth
    python train_net.py --config-file CFG --dataset mydata_train=ann/train.json:frames/train \\
        DATASETS.TRAIN "('mydata_train',)"

``--dataset NAME=JSON:IMAGE_ROOT`` (repeatable) registers a YouTube-VIS-format dataset (a ``NAME`` ending in
``_train`` also gets ``<stem>_train_sub`` / ``<stem>_holdout``) or a COCO-format image dataset; categories come
from the JSON and ``MODEL.NUM_CLASSES`` follows the first video dataset. A ``--dataset`` that neither
``DATASETS.TRAIN`` nor ``DATASETS.TEST`` names (nor a split of it) is an error.

``--eval-only`` evaluates the model in ``MODEL.WEIGHTS`` as it was trained: the class list (hence
``MODEL.NUM_CLASSES``), the meta-architecture and the RGNN-VIS stage come from the checkpoint (or
``model_metadata.json`` beside it), as in ``demo/demo.py``, so the run's own ``OUTPUT_DIR/config.yaml`` works
without registering its training set. The weights load strictly (``projects.engine.checkpoint.load_weights``):
another meta-architecture, a missing / unexpected / differently shaped parameter, or a class list other than that
of a ``DATASETS.TEST`` dataset is an error naming the file. ``--eval-only`` without ``MODEL.WEIGHTS`` is an error;
to evaluate an untrained model on purpose (a baseline, the GT oracle) pass ``MODEL.WEIGHTS ""`` on the command
line. A stage-1 RGNN-VIS / YOLACT model is evaluated on a COCO-format dataset image by image with detectron2's
COCOEvaluator (box and mask AP).

Bad input (config keys, files, datasets, checkpoints) is one line ``error: ...`` on stderr and exit status 2
(``--traceback`` shows the full traceback); any other exception keeps its traceback.
"""

import argparse
import logging
import os
import re
import sys
import weakref
from typing import Any, Dict, List, Optional, Sequence

import torch
from detectron2.data import DatasetCatalog, MetadataCatalog, build_detection_test_loader
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

from projects.data import build_video_test_loader, build_video_train_loader, resolve_num_classes
from projects.data.build import get_video_dataset_dicts, missing_frames
from projects.data.cli import register_cli_datasets
from projects.data.image_sources import is_video_dataset, not_registered_message
from projects.data.model_metadata import (
    CHECKPOINT_KEY,
    ModelMetadataCheckpointable,
    resolve_inference_metadata,
    training_metadata,
    write_model_metadata,
)
from projects.data.splits import split_names
from projects.engine import FaultTolerantCheckpointer, FaultTolerantTrainerMixin, NonFiniteLossError, load_weights
from projects.engine.amp import AutocastModel, autocast_for_inference, resolve_amp_dtype
from projects.engine.checkpoint import CorruptCheckpointError
from projects.engine.ddp import create_ddp_model, share_cpu_threads
from projects.evaluation import YTVISEvaluator
from vis_config import get_project_cfg


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
        warn_missing_test_frames(cfg)  # said now, not only when the evaluation after training reaches the frame
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


def warn_missing_test_frames(cfg) -> None:
    """One warning per ``DATASETS.TEST`` video dataset with missing frame files: evaluation reads every frame
    (whatever ``INPUT.ON_BAD_FRAME`` says) and stops at a missing, undecodable or wrong-sized one, naming it."""
    for name in cfg.DATASETS.TEST:
        if is_video_dataset(name):
            videos = get_video_dataset_dicts([name])
            missing = missing_frames(videos)
            if missing:
                logging.getLogger("detectron2").warning(
                    f"test dataset '{name}': {len(missing)} of {sum(len(v['file_names']) for v in videos)} frame files "
                    f"do not exist (e.g. {missing[0]}); the evaluation after training stops when it reads one"
                )


def check_cli_datasets_used(names: Sequence[str], cfg) -> None:
    """A ``--dataset`` that no ``DATASETS.TRAIN`` / ``TEST`` entry (nor ``MODEL.ORACLE.DATASET``) names, directly
    or through its local splits, would be ignored silently (training on the config's default data): an error."""
    used = set(cfg.DATASETS.TRAIN) | set(cfg.DATASETS.TEST) | {cfg.MODEL.ORACLE.DATASET}
    for name in names:
        if name not in used and not used & set(split_names(name)):
            raise ValueError(
                f"--dataset {name!r} is registered but not used: DATASETS.TRAIN is {tuple(cfg.DATASETS.TRAIN)} and "
                f"DATASETS.TEST is {tuple(cfg.DATASETS.TEST)}; name it there, e.g. DATASETS.TRAIN \"('{name}',)\""
            )


def _weights_given_empty(opts: Sequence[str]) -> bool:
    """``MODEL.WEIGHTS ""`` on the command line: the user asks for an untrained model on purpose."""
    return any(k == "MODEL.WEIGHTS" and v == "" for k, v in zip(opts[0::2], opts[1::2]))


def _dataset_classes(name: str) -> List[str]:
    meta = MetadataCatalog.get(name)
    if meta.get("thing_classes", None) is None:  # a COCO-format JSON not read yet
        DatasetCatalog.get(name)
    return list(MetadataCatalog.get(name).get("thing_classes", None) or [])


def resolve_eval_model(cfg, args) -> Dict[str, Any]:
    """``--eval-only``: point ``cfg`` at the model ``MODEL.WEIGHTS`` holds (cfg not frozen); return its class list.

    ``--resume`` evaluates ``OUTPUT_DIR``'s last checkpoint when there is one. The class list, meta-architecture
    and RGNN-VIS stage come from the weights (:func:`projects.data.model_metadata.resolve_inference_metadata`,
    as the demo); without stored classes, from the first registered ``DATASETS.TEST`` dataset. Every
    ``DATASETS.TEST`` dataset must have the model's class list (the evaluators map class indices through it).
    """
    if args.resume:
        last = FaultTolerantCheckpointer(torch.nn.Module(), cfg.OUTPUT_DIR)
        if last.has_checkpoint():
            cfg.MODEL.WEIGHTS = last.get_checkpoint_file()
    if not cfg.MODEL.WEIGHTS and not _weights_given_empty(args.opts):
        raise ValueError(
            "--eval-only needs MODEL.WEIGHTS, the trained checkpoint (e.g. OUTPUT_DIR/model_final.pth); to evaluate "
            'an untrained model on purpose pass MODEL.WEIGHTS ""'
        )
    if not cfg.DATASETS.TEST:
        raise ValueError("--eval-only: DATASETS.TEST is empty, there is nothing to evaluate on")
    for name in cfg.DATASETS.TEST:
        if name not in DatasetCatalog.list():
            raise ValueError(f"DATASETS.TEST: {not_registered_message(name)}")
    meta = resolve_inference_metadata(cfg)
    model = cfg.MODEL.WEIGHTS or "the model"
    for name in cfg.DATASETS.TEST:
        classes = _dataset_classes(name)
        if classes != meta["thing_classes"]:
            raise ValueError(
                f"{model} has the {len(meta['thing_classes'])} classes {meta['thing_classes']} but test dataset "
                f"{name!r} has {len(classes)}: {classes}; evaluate on data with the model's classes"
            )
    return meta


def build_eval_model(cfg):
    """The model of ``cfg`` with ``MODEL.WEIGHTS`` loaded strictly (``MODEL.WEIGHTS ""``: untrained, a warning)."""
    model = Trainer.build_model(cfg)
    if cfg.MODEL.WEIGHTS:
        load_weights(model, cfg.MODEL.WEIGHTS)
    else:
        logging.getLogger("detectron2").warning('--eval-only with MODEL.WEIGHTS "": evaluating an untrained model')
    return model


def setup(args):
    names = register_cli_datasets(args.dataset)
    cfg = get_project_cfg()
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    check_cli_datasets_used(names, cfg)
    if args.eval_only:
        resolve_eval_model(cfg, args)
    else:
        resolve_num_classes(cfg)
    cfg.freeze()
    run_config = os.path.join(cfg.OUTPUT_DIR, "config.yaml")
    kept = open(run_config, "rb").read() if args.eval_only and os.path.isfile(run_config) else None
    default_setup(cfg, args)  # writes OUTPUT_DIR/config.yaml
    if kept is not None and _rank() == 0:  # --eval-only in a training run's folder keeps that run's config.yaml
        os.replace(run_config, os.path.join(cfg.OUTPUT_DIR, "config_eval.yaml"))
        with open(run_config, "wb") as f:
            f.write(kept)
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
    share_cpu_threads(cfg.MODEL.DEVICE)
    if args.eval_only:
        model = build_eval_model(cfg)
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
    parser.add_argument("--traceback", action="store_true", help="show the full traceback of an error")
    return parser


# What bad input raises (config keys: KeyError; files, datasets, checkpoints: the rest); a checkpoint is also
# refused as a RuntimeError subclass (CorruptCheckpointError), a diverged training as NonFiniteLossError.
USER_ERRORS = (ValueError, KeyError, OSError, CorruptCheckpointError, NonFiniteLossError)


def one_line(e: BaseException) -> str:
    """The message of ``e`` as one line; for an error re-raised from a worker process (DataLoader, launch), the
    original error's line."""
    text = str(e).strip()
    if "Traceback (most recent call last)" in text:
        text = text.splitlines()[-1].strip()
        head, sep, rest = text.partition(": ")
        if sep and re.fullmatch(r"[\w.]+", head):  # "projects.data.errors.DatasetFormatError: <message>"
            text = rest
    elif text:
        text = text.splitlines()[0]
    else:
        text = type(e).__name__
    return text.strip("'\"") if isinstance(e, KeyError) else text


def cli(argv: Optional[Sequence[str]] = None) -> int:
    """``python train_net.py ...``: launch :func:`main`; an error becomes one ``error:`` line and exit status 2."""
    args = build_parser().parse_args(argv)
    logging.getLogger(__name__).info("Command Line Args: %s", args)
    try:
        launch(
            main,
            args.num_gpus,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            args=(args,),
        )
    except USER_ERRORS as e:  # bad input: one line; anything else is a bug and keeps its traceback
        if args.traceback:
            raise
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
