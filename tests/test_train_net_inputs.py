"""train_net.py on the paths a new user takes (issue 23), in-process and tiny: ``--eval-only`` builds and loads
exactly the model in ``MODEL.WEIGHTS`` (class list, meta-architecture, RGNN-VIS stage from the checkpoint, strict
loading) and works with the run's own ``config.yaml``; unusable training data, a bad validation frame and an
unused ``--dataset`` are one ``error:`` line naming the dataset / file."""

import json
import logging
import os
import shutil
import sys

import cv2
import pytest
import torch
from detectron2.modeling import build_model

import train_net
from projects.data.build import resolve_num_classes
from projects.data.cli import register_cli_datasets
from projects.data.model_metadata import ModelMetadataCheckpointable, resolve_inference_metadata, training_metadata
from projects.engine import CorruptCheckpointError, FaultTolerantCheckpointer, load_weights
from tests.ytvis_fixtures import write_tiny_ytvis
from vis_config import get_project_cfg

torch.set_num_threads(1)

STG = "configs/vis_stg/synthetic_R18.yaml"
RGNN1, RGNN2 = "configs/vis_rgnn/synthetic_R18_stage1.yaml", "configs/vis_rgnn/synthetic_R18_stage2.yaml"
ORACLE = "configs/oracle/gt_oracle.yaml"
SMALL = ["INPUT.MIN_SIZE_TEST", "32", "INPUT.MAX_SIZE_TEST", "48", "INPUT.MIN_SIZE_TRAIN", "(32,)"]
SMALL += ["DATALOADER.NUM_WORKERS", "0"]
TINY_STG = [
    *("MODEL.FPN.OUT_CHANNELS", "16", "MODEL.FPN.NORM", ""),
    *("MODEL.VIS_STG.SIZES_OF_INTEREST", "[32, 64]", "MODEL.VIS_STG.GRAPH.NUM_ITERS", "1"),
    *("MODEL.VIS_STG.GRAPH.WINDOW_SIZES", "[5, 3, 3]", "MODEL.VIS_STG.GRAPH.HIDDEN_DIM", "16"),
    *("MODEL.VIS_STG.GRAPH.POOLER_RESOLUTION", "3", "MODEL.VIS_STG.DET.CONV_DIM", "16"),
    *("MODEL.VIS_STG.MASK.CONTROLLER_CONV_DIM", "16", "MODEL.VIS_STG.MASK.BRANCH_CONV_DIM", "16"),
    *("MODEL.VIS_STG.WARP.CONV_DIM", "8", "MODEL.VIS_STG.TRACK.CLASSIFIER_HIDDEN_DIM", "16"),
    *("MODEL.VIS_STG.TRACK.EMBED_DIM", "8", *SMALL),
]
TINY_RGNN = [
    *("MODEL.FPN.OUT_CHANNELS", "16", "MODEL.RGNN.DETECTOR.PROTO_CHANNELS", "16"),
    *("MODEL.RGNN.DETECTOR.HEAD_CHANNELS", "16", "MODEL.RGNN.DETECTOR.NUM_PROTOTYPES", "8"),
    *("MODEL.RGNN.APPEARANCE.CHANNELS", "8", "MODEL.RGNN.APPEARANCE.HIDDEN", "4", "MODEL.RGNN.GNN.DIM", "16"),
    *("MODEL.RGNN.GNN.GATE_HIDDEN", "8", "MODEL.RGNN.GNN.RESIDUAL_HIDDEN", "8", *SMALL),
]


def _cfg(config, opts):
    cfg = get_project_cfg()
    cfg.merge_from_file(config)
    cfg.merge_from_list(list(opts))
    return cfg


def _save(cfg, directory, with_metadata=True):
    """A checkpoint of cfg's (randomly initialised) model as the Trainer writes it (+ the class list)."""
    model = build_model(cfg)
    extra = {"model_metadata": ModelMetadataCheckpointable(training_metadata(cfg))} if with_metadata else {}
    FaultTolerantCheckpointer(model, str(directory), **extra).save("model_final")
    return str(directory / "model_final.pth")


def _copy_json(src, dst, edit):
    data = json.load(open(src))
    edit(data)
    json.dump(data, open(dst, "w"))
    return str(dst)


@pytest.fixture(scope="module")
def a(tmp_path_factory):
    """Tiny 2-class data (cube, ball: 2 videos x 3 frames, 32x48) in several broken variants, and checkpoints."""
    tmp = tmp_path_factory.mktemp("inputs")
    json_file, root, _ = write_tiny_ytvis(str(tmp), num_videos=2, length=3)
    renamed = _copy_json(json_file, tmp / "renamed.json", lambda d: d["categories"][0].update(name="box"))
    empty = _copy_json(json_file, tmp / "empty.json", lambda d: d.update(annotations=[]))
    holes = str(tmp / "holes")  # one validation frame missing
    shutil.copytree(root, holes)
    os.remove(os.path.join(holes, "video2", sorted(os.listdir(os.path.join(holes, "video2")))[1]))
    resized = str(tmp / "resized")  # every frame 56x40 although the JSON says 48x32
    shutil.copytree(root, resized)
    for d, _, files in os.walk(resized):
        for f in files:
            cv2.imwrite(os.path.join(d, f), cv2.resize(cv2.imread(os.path.join(d, f)), (56, 40)))
    odd = str(tmp / "odd")  # one frame of the wrong size
    shutil.copytree(root, odd)
    first = os.path.join(odd, "video1", sorted(os.listdir(os.path.join(odd, "video1")))[0])
    cv2.imwrite(first, cv2.resize(cv2.imread(first), (56, 40)))
    spec = {
        "t23_fit": f"{json_file}:{root}",
        "t23_val": f"{json_file}:{root}",
        "t23_renamed": f"{renamed}:{root}",
        "t23_empty": f"{empty}:{root}",
        "t23_badroot": f"{json_file}:{tmp / 'JPEGImagez'}",
        "t23_resized": f"{json_file}:{resized}",
        "t23_holes": f"{json_file}:{holes}",
        "t23_odd": f"{json_file}:{odd}",
    }
    register_cli_datasets([f"{k}={v}" for k, v in spec.items()])

    fit = ["DATASETS.TRAIN", "('t23_fit',)", "DATASETS.TEST", "()"]
    stg_cfg = _cfg(STG, [*TINY_STG, *fit])
    resolve_num_classes(stg_cfg)
    (tmp / "stg").mkdir()
    stg = _save(stg_cfg, tmp / "stg")
    # the run's own config.yaml: its training set is not registered where it is evaluated
    run_cfg = stg_cfg.clone()
    run_cfg.DATASETS.TRAIN, run_cfg.DATASETS.TEST = ("t23_gone_train",), ("t23_val",)
    (tmp / "stg" / "config.yaml").write_text(run_cfg.dump())

    six = _cfg(STG, [*TINY_STG, *fit, "MODEL.NUM_CLASSES", "6"])  # an older checkpoint without a class list
    (tmp / "six").mkdir()
    six_classes = _save(six, tmp / "six", with_metadata=False)

    rgnn_cfg = _cfg(RGNN1, [*TINY_RGNN, *fit])
    resolve_num_classes(rgnn_cfg)
    (tmp / "rgnn").mkdir()
    rgnn = _save(rgnn_cfg, tmp / "rgnn")
    return {"tmp": tmp, "spec": spec, "stg": stg, "six": six_classes, "rgnn": rgnn}


def _ds(a, *names):
    return [x for n in names for x in ("--dataset", f"{n}={a['spec'][n]}")]


def _eval(a, out, weights, test="t23_val", config=STG, tiny=TINY_STG, register=True):
    weights = ["MODEL.WEIGHTS", weights] if weights is not None else []
    datasets = _ds(a, test) if register else []
    args = ["--eval-only", "--config-file", config, *datasets, "DATASETS.TEST", f"('{test}',)", *weights]
    return [*args, *tiny, "OUTPUT_DIR", str(out)]


def _train(a, out, train, test=None, oracle=None):
    """2 iterations of the GT oracle on ``train`` (fast: the model reads no frame, the data loader does)."""
    names, tests = ([train, test], f"('{test}',)") if test else ([train], "()")
    args = ["--config-file", ORACLE, *_ds(a, *names), "DATASETS.TRAIN", f"('{train}',)", "DATASETS.TEST", tests]
    return [*args, "MODEL.ORACLE.DATASET", oracle or train, "SOLVER.MAX_ITER", "2", *SMALL, "OUTPUT_DIR", str(out)]


def _rebind_log_streams():
    """detectron2's loggers are set up once per process with the sys.stdout of that moment (a pytest capture that
    is closed by now): point them at the current one."""
    loggers = [logging.getLogger()] + [
        x for x in logging.root.manager.loggerDict.values() if isinstance(x, logging.Logger)
    ]
    for handler in (h for lg in loggers for h in lg.handlers):
        if type(handler) is logging.StreamHandler and getattr(handler.stream, "closed", False):
            handler.stream = sys.stdout


def _one_line_error(capsys, argv, text):
    """train_net exits 2 with exactly one ``error:`` line containing ``text`` (and no Python traceback)."""
    _rebind_log_streams()
    capsys.readouterr()
    code = train_net.cli(argv)
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and text in errors[0], (code, err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    return errors[0]


def test_eval_only_builds_and_loads_the_checkpoints_model(a, tmp_path, capsys):
    """A 2-class checkpoint under a config whose default training set has 6 classes: a 2-class model with the
    checkpoint's weights (all of them) is evaluated."""
    argv = _eval(a, tmp_path, a["stg"])
    cfg = train_net.setup(train_net.build_parser().parse_args(argv))
    assert cfg.MODEL.NUM_CLASSES == 2
    model = train_net.build_eval_model(cfg)
    stored = torch.load(a["stg"], map_location="cpu", weights_only=True)["model"]
    state = model.state_dict()
    assert state.keys() == stored.keys() and all(torch.equal(state[k], stored[k]) for k in state)
    _rebind_log_streams()
    capsys.readouterr()
    assert train_net.cli(argv) == 0, capsys.readouterr().err[-3000:]
    assert "copypaste: AP" in "".join(capsys.readouterr())
    results = json.loads((tmp_path / "inference" / "t23_val" / "results.json").read_text())
    assert {r["category_id"] for r in results} <= {3, 7}


def test_eval_only_with_the_runs_config_yaml(a, tmp_path):
    """OUTPUT_DIR/config.yaml names a training set this process never registered: not needed to evaluate."""
    config = os.path.join(os.path.dirname(a["stg"]), "config.yaml")
    argv = _eval(a, tmp_path, a["stg"], config=config, tiny=[])
    cfg = train_net.setup(train_net.build_parser().parse_args(argv))
    assert cfg.MODEL.NUM_CLASSES == 2 and cfg.DATASETS.TRAIN == ("t23_gone_train",)


def test_eval_only_in_the_runs_folder_keeps_its_config_yaml(a, tmp_path):
    """--eval-only with OUTPUT_DIR = the training run's folder: the run's config.yaml is not overwritten (the
    evaluation's own config goes to config_eval.yaml)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("# the training run's config\n")
    train_net.setup(train_net.build_parser().parse_args(_eval(a, run, a["stg"])))
    assert (run / "config.yaml").read_text() == "# the training run's config\n"
    assert "t23_val" in (run / "config_eval.yaml").read_text()


@pytest.mark.parametrize(
    "case, text",
    [
        ("no weights", "--eval-only needs MODEL.WEIGHTS, the trained checkpoint"),
        ("head shape", "six/model_final.pth does not match the config's model"),
        ("other architecture", "rgnn/model_final.pth holds a RGNNVIS model but the config builds VisSTG"),
        ("other classes", "test dataset 't23_renamed' has 2: ['box', 'ball']"),
        ("unregistered test set", "DATASETS.TEST: dataset 't23_nowhere' is not registered: pass --dataset"),
    ],
)
def test_eval_only_refuses_a_model_it_cannot_evaluate(a, tmp_path, capsys, case, text):
    argv = {
        "no weights": lambda: _eval(a, tmp_path, None),
        "head shape": lambda: _eval(a, tmp_path, a["six"]),
        "other architecture": lambda: _eval(a, tmp_path, a["rgnn"]),
        "other classes": lambda: _eval(a, tmp_path, a["stg"], test="t23_renamed"),
        "unregistered test set": lambda: _eval(a, tmp_path, a["stg"], test="t23_nowhere", register=False),
    }[case]()
    line = _one_line_error(capsys, argv, text)
    if case == "head shape":
        assert "parameters with another shape" in line


def test_rgnn_stage_follows_the_checkpoint(a, tmp_path):
    """A stage-1 checkpoint given to the stage-2 config runs as stage 1 (demo and --eval-only alike), also when
    only the model's stage buffer says so (checkpoints written before the metadata had the stage)."""
    cfg = _cfg(RGNN2, [*TINY_RGNN, "MODEL.WEIGHTS", a["rgnn"], "MODEL.NUM_CLASSES", "-1"])
    assert cfg.MODEL.RGNN.STAGE == 2
    meta = resolve_inference_metadata(cfg)
    assert cfg.MODEL.RGNN.STAGE == 1 and cfg.MODEL.NUM_CLASSES == 2 and meta["rgnn_stage"] == 1
    ckpt = torch.load(a["rgnn"], map_location="cpu", weights_only=True)
    del ckpt["model_metadata"]["rgnn_stage"]
    torch.save(ckpt, tmp_path / "legacy.pth")
    cfg = _cfg(RGNN2, [*TINY_RGNN, "MODEL.WEIGHTS", str(tmp_path / "legacy.pth"), "MODEL.NUM_CLASSES", "-1"])
    resolve_inference_metadata(cfg)
    assert cfg.MODEL.RGNN.STAGE == 1


def test_unused_dataset_is_an_error(a, tmp_path):
    args = ["--config-file", ORACLE, *_ds(a, "t23_fit"), "OUTPUT_DIR", str(tmp_path)]
    with pytest.raises(ValueError, match="--dataset 't23_fit' is registered but not used: DATASETS.TRAIN is"):
        train_net.setup(train_net.build_parser().parse_args(args))
    args += ["DATASETS.TRAIN", "('t23_fit',)", "DATASETS.TEST", "()"]
    assert train_net.setup(train_net.build_parser().parse_args(args)).MODEL.NUM_CLASSES == 2


@pytest.mark.parametrize(
    "dataset, text",
    [
        ("t23_badroot", "JPEGImagez: image root of dataset 't23_badroot' holds none of its 2 videos"),
        ("t23_empty", "empty.json: dataset 't23_empty' has no annotated object"),
        ("t23_resized", "no usable training sample in DATASETS.TRAIN ('t23_resized',): all 2 were skipped"),
    ],
)
def test_no_usable_training_sample_is_one_line(a, tmp_path, capsys, dataset, text):
    line = _one_line_error(capsys, _train(a, tmp_path, dataset, oracle="t23_val"), text)
    if dataset == "t23_resized":
        assert "frame is 56x40 but the annotation says 48x32" in line


def test_bad_validation_frame_is_one_line(a, tmp_path, capsys):
    """A missing frame of DATASETS.TEST is announced when training starts; evaluating a missing or wrong-sized
    frame is one line naming the file (evaluation reads every frame, whatever INPUT.ON_BAD_FRAME says)."""
    _rebind_log_streams()
    capsys.readouterr()
    assert train_net.cli(_train(a, tmp_path / "t", "t23_fit", test="t23_holes", oracle="t23_holes")) == 0
    out = "".join(capsys.readouterr())
    assert "test dataset 't23_holes': 1 of 6 frame files do not exist (e.g. " in out and "/holes/video2/" in out
    line = _one_line_error(capsys, _eval(a, tmp_path / "e", a["stg"], test="t23_holes"), "/holes/video2/")
    assert "frame file does not exist" in line
    line = _one_line_error(capsys, _eval(a, tmp_path / "e", a["stg"], test="t23_odd"), "/odd/video1/")
    assert "frame is 56x40 but the annotation says 48x32" in line


def test_a_file_that_is_no_checkpoint_is_named_without_pytorchs_advice(a, tmp_path):
    """MODEL.WEIGHTS some.jpg: the shared strict loader names the file; no advice to pass weights_only=False."""
    jpg = sorted((a["tmp"] / "tiny" / "JPEGImages" / "video1").iterdir())[0]
    cfg = _cfg(STG, [*TINY_STG, "MODEL.NUM_CLASSES", "2"])
    with pytest.raises(CorruptCheckpointError) as e:
        load_weights(build_model(cfg), str(jpg))
    message = str(e.value)
    assert message.startswith(
        f"checkpoint {jpg} is corrupt or incomplete (or not a checkpoint at all): UnpicklingError"
    )
    assert "weights_only" not in message and "\n" not in message
