"""Every shipped config runs end to end (issue 23, item 1): for each runnable yaml under ``configs/`` (found by a
glob, so a new config is covered without editing this file) the model trains 2 iterations through
``train_net.main``, ``train_net.main --eval-only`` evaluates the written checkpoint on a 2-video set, and
``demo/demo.py``'s ``main`` runs it on a folder of frames. ``Base-*.yaml`` files are covered through the configs
that inherit from them; each must be used by at least one.

Small overrides keep it fast on 2 CPU cores: ResNet-18 instead of deeper ResNets, FPN / head widths of at most
64, 2 iterations of 1 clip (RGNN-VIS stage 2: 4 frames), and frames of 97 x 141 (neither a multiple of 8 nor of
32) kept at that size; thresholds let a 2-iteration model's detections through, so tracking and result writing
run on real outputs. Models whose depth or width was cut also build and run inference as shipped.
RGNN-VIS stage 2 starts from the checkpoint the matching stage-1 config wrote here; the COCO image segmenter
(``YolactSegmenter``) trains and evaluates on a COCO-format set written from the same frames.
Everything runs in this process (the CLI entry points, not subprocesses: interpreter start-up would dominate).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import io
import json
import logging
import math
import os
import time
from typing import Dict, List, Tuple

import pytest
import torch
import yaml
from detectron2.config import CfgNode
from detectron2.modeling import META_ARCH_REGISTRY, build_model

import train_net
from demo.demo import main as demo_main
from projects.modeling import iterate_online
from tests.coco_fixtures import ytvis_to_coco
from tests.ytvis_fixtures import write_tiny_ytvis
from vis_config import get_project_cfg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, "configs")
ALL_CONFIGS = sorted(
    os.path.relpath(p, CONFIG_DIR) for p in glob.glob(os.path.join(CONFIG_DIR, "**", "*.yaml"), recursive=True)
)
BASES = [c for c in ALL_CONFIGS if os.path.basename(c).startswith("Base-")]
RUNNABLE = [c for c in ALL_CONFIGS if c not in BASES]
H, W = 97, 141  # neither a multiple of 8 nor of 32
TRAIN, VAL, COCO_TRAIN, COCO_VAL = "allcfg_train", "allcfg_val", "allcfg_coco_train", "allcfg_coco_val"
IMAGE_MODELS = ("YolactSegmenter",)  # single-image segmenters: COCO-format data
TIMES: Dict[str, Tuple[float, float]] = {}  # "config step" -> (wall, CPU) seconds; printed at the end (-s)

# Channel widths of the FPN and the heads, capped at MAX_WIDTH (the ResNet-18 trunk keeps its own widths).
MAX_WIDTH = 64
WIDTHS = [
    "MODEL.FPN.OUT_CHANNELS",
    "MODEL.VIS_STG.GRAPH.HIDDEN_DIM",
    "MODEL.VIS_STG.DET.CONV_DIM",
    "MODEL.VIS_STG.MASK.BRANCH_CONV_DIM",
    "MODEL.VIS_STG.MASK.CONTROLLER_CONV_DIM",
    "MODEL.VIS_STG.WARP.CONV_DIM",
    "MODEL.VIS_STG.TRACK.CLASSIFIER_HIDDEN_DIM",
    "MODEL.VIS_STG.TRACK.EMBED_DIM",
    "MODEL.RGNN.DETECTOR.PROTO_CHANNELS",
    "MODEL.RGNN.DETECTOR.HEAD_CHANNELS",
    "MODEL.RGNN.APPEARANCE.CHANNELS",
    "MODEL.RGNN.APPEARANCE.HIDDEN",
    "MODEL.RGNN.GNN.DIM",
]
METHOD_KEYS = {"MODEL.VIS_STG.": ("VisSTG",), "MODEL.RGNN.": ("RGNNVIS", "YolactSegmenter")}
NO_NETWORK = ("VideoGTOracle",)  # the GT oracle: a score parameter, no backbone
# A 2-iteration model's scores sit below every shipped threshold: keep every detection, track and mask pixel so
# that the tracking, mask and result-writing code after the detector runs on real data.
KEEP_ALL = [
    "TEST.VIDEO.MASK_THRESHOLD", "0.0",
    "MODEL.VIS_STG.INFERENCE.SCORE_THRESH", "0.0",
    "MODEL.VIS_STG.TRACK.REF_SCORE_THRESH", "0.0",
    "MODEL.RGNN.DETECTOR.SCORE_LOGIT_THRESH", "-50.0",
    "MODEL.RGNN.DETECTOR.IMAGE_TEST.CONF_THRESH", "0.0",
    "MODEL.RGNN.INIT_THRESHOLD", "-50.0",
    "MODEL.RGNN.INACTIVE_THRESHOLD", "-50.0",
    "MODEL.RGNN.HEURISTIC.SCORE_THRESH", "0.0",  # stage 1 tracks with the heuristic association
    "MODEL.RGNN.TRAIN_INIT_THRESHOLD", "-50.0",  # stage 2: tracks from the first frame, so every loss term runs
    "MODEL.RGNN.LOSS.DET_MATCH_IOU", "0.0",  # stage 2: every annotation has a detection, as a trained model
    "MODEL.ORACLE.DATASET", VAL,  # the GT oracle's predictions (else the first of DATASETS.TEST)
]  # fmt: skip


@contextlib.contextmanager
def _timed(config: str, step: str):
    start, cpu = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        TIMES[f"{config} {step}"] = (time.perf_counter() - start, time.process_time() - cpu)


def _base_chain(config: str) -> List[str]:
    """``config`` and every ``_BASE_`` it inherits from (paths relative to configs/)."""
    chain, path = [], os.path.join(CONFIG_DIR, config)
    while path:
        chain.append(os.path.relpath(path, CONFIG_DIR))
        with open(path) as f:
            data = yaml.safe_load(f) or {}
        nxt = data.get("_BASE_")
        path = os.path.normpath(os.path.join(os.path.dirname(path), nxt)) if nxt else None
    return chain


def _load(config: str, *opts) -> CfgNode:
    cfg = get_project_cfg()
    cfg.merge_from_file(os.path.join(CONFIG_DIR, config))
    cfg.merge_from_list(list(opts))
    return cfg


def test_config_folder_is_found_and_every_base_is_used():
    assert len(RUNNABLE) >= 8, RUNNABLE  # the glob sees the shipped configs
    used = {b for c in RUNNABLE for b in _base_chain(c)[1:]}
    unused = [b for b in BASES if b not in used]
    assert not unused, f"base configs that no runnable config inherits from (so no test runs them): {unused}"


# ---------------------------------------------------------------------------------------------------------------
# Data: a tiny YouTube-VIS-format train set (clips of 10 frames for RGNN-VIS stage 2) and a 2-video val set, both
# 97 x 141 with 2 classes of non-contiguous ids; COCO-format image sets written from them.


@pytest.fixture(scope="module", autouse=True)
def _print_runtimes():
    """The runtime of each step, printed after the last test (seen with -s)."""
    yield
    print("\nwall s   CPU s  config step")
    for key, (wall, cpu) in sorted(TIMES.items()):
        print(f"{wall:6.1f} {cpu:7.1f}  {key}")
    print(f"{sum(w for w, _ in TIMES.values()):6.1f} {sum(c for _, c in TIMES.values()):7.1f}  total")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The data sets, and the trained OUTPUT_DIRs (filled by the tests)."""
    root = tmp_path_factory.mktemp("all_configs")
    train_json, train_root, _ = write_tiny_ytvis(str(root), 2, 10, H, W, kind="compressed", name="train")
    val_json, val_root, _ = write_tiny_ytvis(str(root), 2, 4, H, W, kind="compressed", name="val")
    coco_train, coco_val = str(root / "coco_train.json"), str(root / "coco_val.json")
    ytvis_to_coco(train_json, coco_train)
    ytvis_to_coco(val_json, coco_val)
    return {
        "train": f"{TRAIN}={train_json}:{train_root}",
        "val": f"{VAL}={val_json}:{val_root}",
        "coco_train": f"{COCO_TRAIN}={coco_train}:{train_root}",
        "coco_val": f"{COCO_VAL}={coco_val}:{val_root}",
        "demo_frames": os.path.join(val_root, "video1"),
        "train_name": TRAIN,
        "val_name": VAL,
        "coco_train_name": COCO_TRAIN,
        "coco_val_name": COCO_VAL,
        "trained": {},
    }


def _model_overrides(cfg: CfgNode) -> List[str]:
    """ResNet-18 instead of a deeper ResNet, FPN / head widths above ``MAX_WIDTH`` cut to it, and YOLACT's fixed
    550 x 550 test resize made small (still not a multiple of 8). Empty for a config that is small already."""
    meta = cfg.MODEL.META_ARCHITECTURE
    if meta in NO_NETWORK:
        return []
    opts = []
    if cfg.MODEL.RESNETS.DEPTH > 34:
        opts += ["MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64"]
    for key in WIDTHS:
        if any(key.startswith(prefix) and meta not in metas for prefix, metas in METHOD_KEYS.items()):
            continue  # the other method's keys: unused by this model
        node = cfg
        for part in key.split("."):
            node = node[part]
        if node > MAX_WIDTH:
            opts += [key, str(MAX_WIDTH)]
    if cfg.MODEL.RGNN.TEST_RESIZE:
        opts += ["MODEL.RGNN.TEST_RESIZE", f"[{H + 8}, {W + 12}]"]
    if cfg.MODEL.RGNN.get("TRAIN_RESIZE"):  # the paper configs' 480 x 864 training resize: a small odd size here
        opts += ["MODEL.RGNN.TRAIN_RESIZE", f"[{H + 4}, {W + 6}]"]
    return opts


def _small(cfg: CfgNode) -> List[str]:
    """Overrides that make ``cfg``'s model small, its inputs 97 x 141 (not resized) and train it 2 iterations."""
    opts = ["MODEL.DEVICE", "cpu", "MODEL.NUM_CLASSES", "-1", "SEED", "0", "DATALOADER.NUM_WORKERS", "0"]
    opts += ["SOLVER.MAX_ITER", "2", "SOLVER.IMS_PER_BATCH", "1", "SOLVER.CHECKPOINT_PERIOD", "100000"]
    opts += ["INPUT.MIN_SIZE_TRAIN", f"({H},)", "INPUT.MIN_SIZE_TRAIN_SAMPLING", "choice"]
    opts += ["INPUT.MAX_SIZE_TRAIN", "1000"]
    if cfg.INPUT.SCALE_CROP.ENABLED:  # the release's scale-crop to 480 x 864 (paper configs): its 97 x 141 version
        opts += ["INPUT.SCALE_CROP.SIZE", f"({H}, {W})", "INPUT.SCALE_CROP.REFERENCE_SIZE", f"({H}, {W})"]
    if cfg.INPUT.MIN_SIZE_TEST:  # 0: the model resizes itself (YOLACT's 550 x 550)
        opts += ["INPUT.MIN_SIZE_TEST", str(H), "INPUT.MAX_SIZE_TEST", "1000"]
    if cfg.INPUT.SAMPLING_FRAME_NUM > 4:  # RGNN-VIS stage 2: clips of 4 consecutive frames instead of 10
        opts += ["INPUT.SAMPLING_FRAME_NUM", "4"]
    return opts + _model_overrides(cfg) + KEEP_ALL


def _online(cfg: CfgNode) -> bool:
    """An online video model (``init_video_state`` / ``step``): the demo runs it."""
    return hasattr(META_ARCH_REGISTRY.get(cfg.MODEL.META_ARCHITECTURE), "step")


def _stage(cfg: CfgNode) -> int:
    return cfg.MODEL.RGNN.STAGE if cfg.MODEL.META_ARCHITECTURE == "RGNNVIS" else 1


def _stage1_partner(config: str) -> str:
    """The stage-1 config whose checkpoint a stage-2 config trains from: same model (backbone, FPN, anchors,
    segmenter); ties broken by the longest common file-name prefix."""
    cfg = _load(config)

    def model_key(c):
        m = c.MODEL
        return (m.BACKBONE, m.RESNETS, m.FPN, m.ANCHOR_GENERATOR, m.RGNN.DETECTOR, m.PIXEL_MEAN, m.PIXEL_STD)

    candidates = []
    for other in RUNNABLE:
        o = _load(other)
        if o.MODEL.META_ARCHITECTURE == "RGNNVIS" and _stage(o) == 1 and model_key(o) == model_key(cfg):
            candidates.append(other)
    assert candidates, f"{config}: no stage-1 config under configs/ builds the same model"
    return max(candidates, key=lambda c: len(os.path.commonprefix([c, config])))


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: List[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _warnings_of(fn, *args):
    """Run ``fn(*args)``; return (its result, the WARNING+ messages of the checkpoint loaders)."""
    handler = _Records()
    loggers = [logging.getLogger(n) for n in ("fvcore", "detectron2", "projects", "vis_rgnn", "vis_stg")]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        return fn(*args), handler.messages
    finally:
        for lg in loggers:
            lg.removeHandler(handler)


def _args(config: str, *argv) -> argparse.Namespace:
    return train_net.build_parser().parse_args(["--config-file", os.path.join(CONFIG_DIR, config), *argv])


def _slug(config: str) -> str:
    return config.replace("/", "_").replace(".yaml", "")


def _train(data, config: str, tmp_root) -> str:
    """Train ``config`` 2 iterations via ``train_net.main`` (once per session); return its OUTPUT_DIR."""
    if config in data["trained"]:
        out = data["trained"][config]
        if out is None:
            raise AssertionError(f"training {config} failed (see its test)")
        return out
    data["trained"][config] = None
    cfg = _load(config)
    out = str(tmp_root / ("train_" + _slug(config)))
    train = "coco_train" if cfg.MODEL.META_ARCHITECTURE in IMAGE_MODELS else "train"
    # DATASETS.TEST (): --eval-only below evaluates (the same Trainer.test an evaluation after training runs)
    opts = _small(cfg) + ["DATASETS.TRAIN", f"('{data[train + '_name']}',)", "DATASETS.TEST", "()", "OUTPUT_DIR", out]
    if _stage(cfg) == 2:
        opts += ["MODEL.WEIGHTS", os.path.join(_train(data, _stage1_partner(config), tmp_root), "model_final.pth")]
    else:
        opts += ["MODEL.WEIGHTS", ""]
    with _timed(config, "train"):
        train_net.main(_args(config, "--dataset", data[train], *opts))
    assert os.path.isfile(os.path.join(out, "model_final.pth")), f"no model_final.pth in {out}"
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = [json.loads(line) for line in f if line.strip()]
    losses = [m for m in metrics if "total_loss" in m]
    assert losses and losses[-1]["iteration"] == 1, f"did not train 2 iterations: {metrics}"
    assert all(math.isfinite(m["total_loss"]) for m in losses), losses
    data["trained"][config] = out
    return out


def _check_stage2_start(data, config: str, cfg: CfgNode, weights: str, tmp_root) -> None:
    """Stage 2 started from the stage-1 checkpoint: its frozen backbone and segmenter (BatchNorm statistics
    included) are that checkpoint's, unchanged by 2 iterations."""
    stage1 = torch.load(
        os.path.join(data["trained"][_stage1_partner(config)], "model_final.pth"),
        map_location="cpu",
        weights_only=False,
    )["model"]
    final = torch.load(weights, map_location="cpu", weights_only=False)["model"]
    frozen = [k for k in stage1 if k.startswith(("backbone.", "detector."))]
    assert frozen and all(k in final for k in frozen), "stage-2 checkpoint lacks stage-1 tensors"
    changed = [k for k in frozen if not torch.equal(final[k], stage1[k])]
    assert not changed, f"stage-1 tensors differ after stage 2 (not loaded, or not frozen): {changed[:5]}"


def _evaluate(data, config: str, cfg: CfgNode, weights: str, tmp_root) -> None:
    """``--eval-only`` as a user runs it: the config, a validation set and the checkpoint (not the training set)."""
    image_model = cfg.MODEL.META_ARCHITECTURE in IMAGE_MODELS
    val = "coco_val" if image_model else "val"
    name, out = data[val + "_name"], str(tmp_root / ("eval_" + _slug(config)))
    opts = _small(cfg) + ["DATASETS.TEST", f"('{name}',)", "MODEL.WEIGHTS", weights, "OUTPUT_DIR", out]
    with _timed(config, "eval"):
        res, messages = _warnings_of(train_net.main, _args(config, "--eval-only", "--dataset", data[val], *opts))
    loading = [
        m for m in messages if "not found in the checkpoint" in m or "Skip loading" in m or "not used by the model" in m
    ]
    assert not loading, f"the checkpoint did not load fully into the evaluated model: {loading}"
    assert res and "segm" in res, res
    if image_model:
        with open(os.path.join(out, "inference", name, "coco_instances_results.json")) as f:
            results = json.load(f)
        assert results and {r["category_id"] for r in results} <= {3, 7}
        assert {tuple(r["segmentation"]["size"]) for r in results} == {(H, W)}
    else:
        with open(os.path.join(out, "inference", name, "results.json")) as f:
            results = json.load(f)
        assert results and {r["video_id"] for r in results} <= {1, 2}
        assert {r["category_id"] for r in results} <= {3, 7}
        assert all(len(r["segmentations"]) == 4 for r in results)
        sizes = {tuple(s["size"]) for r in results for s in r["segmentations"] if s}
        assert sizes == {(H, W)}, sizes


def _demo(data, config: str, cfg: CfgNode, weights: str, tmp_root) -> None:
    """demo/demo.py's main on the written checkpoint, on a folder of 4 frames of 97 x 141."""
    video = str(tmp_root / ("demo_" + _slug(config) + ".mp4"))
    result_json = video[:-4] + ".json"
    argv = ["--config-file", os.path.join(CONFIG_DIR, config), "--video-input", data["demo_frames"]]
    argv += ["--output", video, "--json", result_json, *_small(cfg), "MODEL.WEIGHTS", weights]
    stdout, stderr = io.StringIO(), io.StringIO()
    with _timed(config, "demo"), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = demo_main(argv)
    stdout, stderr = stdout.getvalue(), stderr.getvalue()
    if not _online(cfg):  # not an online video model: one clear line
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert code != 0 and len(errors) == 1 and "not an online video model" in errors[0], stderr[-3000:]
        return
    assert code == 0, f"exit {code}: {stderr[-3000:]}"
    assert "processed 4 frames" in stdout, stdout
    with open(result_json) as f:
        tracks = json.load(f)
    assert tracks and all(len(t["segmentations"]) == 4 and t["category_id"] in (3, 7) for t in tracks), tracks
    assert os.path.getsize(video) > 0


@pytest.mark.parametrize("config", RUNNABLE)
def test_config_trains_evaluates_and_runs_the_demo(config, data, tmp_path_factory):
    """Each step runs even when an earlier one found a problem (if it has a checkpoint); all problems are listed."""
    tmp_root = tmp_path_factory.getbasetemp()
    cfg = _load(config)
    out = _train(data, config, tmp_root)
    weights = os.path.join(out, "model_final.pth")
    steps = [(_evaluate, "--eval-only"), (_demo, "demo")]
    if _stage(cfg) == 2:
        steps.insert(0, (_check_stage2_start, "stage 2 from stage 1"))
    problems = []
    for step, what in steps:
        try:
            step(data, config, cfg, weights, tmp_root)
        except Exception as e:  # noqa: BLE001 (reported below with the step's name)
            logging.getLogger(__name__).exception(f"{config}: {what}")
            problems.append(f"{what}: {type(e).__name__}: {str(e)[:2000]}")
    assert not problems, f"{config}:\n" + "\n".join(problems)


@pytest.mark.parametrize("config", [c for c in RUNNABLE if _model_overrides(_load(c))])
def test_config_builds_and_infers_at_its_shipped_size(config):
    """The model as shipped (its depth and widths; only the class count and the device set) builds and runs
    inference on 2 frames of 97 x 141, for every config whose end-to-end test above runs a smaller model."""
    cfg = _load(config, "MODEL.DEVICE", "cpu", "MODEL.NUM_CLASSES", "2")
    meta = cfg.MODEL.META_ARCHITECTURE
    torch.manual_seed(0)
    frames = [torch.randint(0, 256, (3, H, W), dtype=torch.uint8) for _ in range(2)]
    with _timed(config, "shipped size"), torch.no_grad():
        model = build_model(cfg).eval()
        if _online(cfg):
            outputs = [inst for _, inst in iterate_online(model, frames, H, W)]
        elif meta in IMAGE_MODELS:
            outputs = [out["instances"] for out in model([{"image": f, "height": H, "width": W} for f in frames])]
        else:  # the GT oracle predicts from a dataset's annotations: building it is all there is
            outputs = []
    assert all(inst.image_size == (H, W) for inst in outputs)
    assert len(outputs) == 2 or not (_online(cfg) or meta in IMAGE_MODELS)
