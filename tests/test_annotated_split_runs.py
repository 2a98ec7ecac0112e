"""``experiments/annotated_split_runs.py``: the command line shared by the RGNN-VIS diagnostics, run end to end
(``--dataset``, overrides, checkpoint loading) on a generated annotated split with a random-weight checkpoint."""

import pytest
import torch
from detectron2.modeling import build_model

from experiments import rgnn_association_cues, rgnn_segmenter_quality
from projects.data.build import resolve_num_classes
from projects.data.cli import register_cli_datasets
from projects.data.synthetic import generate_synthetic_vis
from vis_config import get_project_cfg

CONFIG = "configs/vis_rgnn/synthetic_R18_stage2.yaml"


@pytest.fixture(scope="module")
def split_and_weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("annotated")
    json_file = generate_synthetic_vis(str(root), 2, 3, 64, 96, seed=5, split_name="diag")
    name = f"diag_{root.name}"
    spec = f"{name}={json_file}:{root / 'diag' / 'JPEGImages'}"
    register_cli_datasets([spec])
    cfg = get_project_cfg()
    cfg.merge_from_file(CONFIG)
    on_split = ["DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", f"('{name}',)", "MODEL.DEVICE", "cpu"]
    # the seeded random model this test was set up with (detectron2's full-width R18 trunk)
    on_split += ["MODEL.BACKBONE.NAME", "build_retinanet_resnet_fpn_backbone", "MODEL.RESNETS.STEM_OUT_CHANNELS", "64"]
    on_split += ["MODEL.RESNETS.RES2_OUT_CHANNELS", "64"]
    cfg.merge_from_list(on_split)
    resolve_num_classes(cfg)
    torch.manual_seed(0)
    weights = root / "random.pth"
    torch.save({"model": build_model(cfg).state_dict()}, weights)
    opts = [
        "--config-file",
        CONFIG,
        "--dataset",
        spec,
        *on_split,
        # random weights score low: every detection is kept and starts a track, so there is something to label
        "MODEL.RGNN.DETECTOR.SCORE_LOGIT_THRESH",
        "-50.0",
        "MODEL.RGNN.INIT_THRESHOLD",
        "-50.0",
    ]
    return opts, str(weights)


def test_association_cues_run_on_a_registered_split(split_and_weights, capsys):
    opts, weights = split_and_weights
    summary = rgnn_association_cues.main([*opts, "MODEL.WEIGHTS", weights])
    assert set(summary) == {"iou", "appearance", "gnn"}  # the stage-2 config has the appearance model
    counts = {s["n"] for s in summary.values()}
    assert len(counts) == 1 and counts.pop() > 0  # every cue is asked about the same, labelled detections
    assert "| cue |" in capsys.readouterr().out


def test_segmenter_quality_runs_on_a_registered_split(split_and_weights, capsys):
    opts, weights = split_and_weights
    rgnn_segmenter_quality.main([*opts, "MODEL.WEIGHTS", weights])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("diag_") and "object-frames" in line
    n = int(line.split(": ")[1].split(" ")[0])
    assert n > 0  # 2 videos x 3 frames of annotated objects


def test_missing_weights_is_a_usage_error(split_and_weights, capsys):
    opts, _ = split_and_weights
    with pytest.raises(SystemExit) as exit_info:
        rgnn_segmenter_quality.main([*opts, "MODEL.WEIGHTS", ""])
    assert exit_info.value.code == 2 and "give MODEL.WEIGHTS" in capsys.readouterr().err
