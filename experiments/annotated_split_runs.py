"""Shared command line of the diagnostics that run a trained checkpoint over an annotated VIS split
(``rgnn_association_cues.py``, ``rgnn_segmenter_quality.py``): parse ``--config-file``, ``--dataset`` and the
config overrides, load the model, and call ``per_video(model, video_dict, video_input)`` on every video of
``DATASETS.TEST[0]``, collecting the records it returns."""

from __future__ import annotations

import argparse
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

import projects.data  # noqa: F401  (registers the builtin datasets)
from projects.data.build import build_video_test_loader, get_video_dataset_dicts, resolve_num_classes
from projects.data.cli import register_cli_datasets
from vis_config import get_project_cfg


def experiment_cfg(config_file: str, opts: Sequence[str], datasets: Optional[Sequence[str]] = ()):
    """The config an experiment script runs: ``--dataset`` registrations (as ``train_net.py``), the config file,
    the ``KEY VALUE`` overrides, in-process data loading (``NUM_WORKERS 0``) and ``MODEL.NUM_CLASSES`` resolved
    from the datasets."""
    register_cli_datasets(datasets)
    cfg = get_project_cfg()
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    cfg.DATALOADER.NUM_WORKERS = 0
    resolve_num_classes(cfg)
    return cfg


def run_checkpoint_on_annotated_split(
    description: str,
    argv: Optional[Sequence[str]],
    weights_what: str,
    per_video: Callable,
) -> Tuple[str, str, List]:
    """Parse ``argv`` (``--config-file``, ``--dataset``, overrides; ``description`` is the help text), build and
    load the model and run ``per_video`` on every video of the first test set, without gradients. ``weights_what``
    names the checkpoint the script needs, for the error when ``MODEL.WEIGHTS`` is missing. Returns (dataset
    name, weights, records)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument(
        "--dataset", action="append", metavar="NAME=JSON:IMAGE_ROOT", help="register a dataset, as train_net.py"
    )
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, e.g. MODEL.WEIGHTS path")
    args = parser.parse_args(argv)
    cfg = experiment_cfg(args.config_file, args.opts, args.dataset)
    if not cfg.MODEL.WEIGHTS:
        parser.error(f"give MODEL.WEIGHTS ({weights_what})")
    model = build_model(cfg).eval()
    DetectionCheckpointer(model).load(cfg.MODEL.WEIGHTS)
    name = cfg.DATASETS.TEST[0]
    videos = get_video_dataset_dicts([name])
    if not videos or "annotations" not in videos[0]:
        raise SystemExit(f"dataset {name!r} has no annotations to compare the model's output with")
    records: List = []
    with torch.no_grad():
        for video_dict, (video_input,) in zip(videos, build_video_test_loader(cfg, name)):
            records += per_video(model, video_dict, video_input)
    return name, cfg.MODEL.WEIGHTS, records
