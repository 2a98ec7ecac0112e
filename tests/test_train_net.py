"""train_net.py end to end (train + evaluate) with the GT oracle model, single- and multi-process."""

import json

import pytest

from tests.train_cli import run_cli
from tests.ytvis_fixtures import write_tiny_ytvis


def _run(args, check=True):
    proc = run_cli("train_net.py", args)
    if check and proc.returncode != 0:
        raise AssertionError(f"train_net failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_ytvis")
    json_file, image_root, _ = write_tiny_ytvis(str(root), num_videos=3, length=5)
    return f"tiny_train={json_file}:{image_root}", f"tiny_val={json_file}:{image_root}", json_file


def _oracle_args(tiny, out, *extra):
    data = ["--dataset", tiny[0], "--dataset", tiny[1], "DATASETS.TRAIN", "('tiny_train',)"]
    data += ["DATASETS.TEST", "('tiny_val',)", "INPUT.MIN_SIZE_TRAIN", "(32,)", "INPUT.MIN_SIZE_TEST", "32"]
    config = ["--config-file", "configs/oracle/gt_oracle.yaml"]
    return [*config, *data, "SOLVER.MAX_ITER", "3", "OUTPUT_DIR", str(out), *extra]


def test_train_then_evaluate_with_oracle(tiny, tmp_path):
    proc = _run(_oracle_args(tiny, tmp_path))
    log = proc.stdout + proc.stderr
    assert "copypaste: AP,AP50,AP75,APs,APm,APl,AR1,AR10" in log
    results_file = tmp_path / "inference" / "tiny_val" / "results.json"
    results = json.loads(results_file.read_text())
    assert len(results) == 6 and {r["video_id"] for r in results} == {1, 2, 3}
    assert {r["category_id"] for r in results} == {3, 7}  # dataset ids, not contiguous
    assert all(len(r["segmentations"]) == 5 for r in results)
    assert (tmp_path / "inference" / "tiny_val" / "results.zip").exists()
    metrics = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    final = [m for m in metrics if "segm/AP" in m][-1]
    assert final["segm/AP"] == pytest.approx(100.0)  # the unperturbed oracle is perfect
    assert (tmp_path / "model_final.pth").exists()


def test_distributed_evaluation_equals_single_process(tiny, tmp_path):
    extra = ["MODEL.ORACLE.DROP_FRAME_PROB", "0.4", "MODEL.ORACLE.MASK_JITTER", "1", "MODEL.WEIGHTS", ""]
    single = _run(["--eval-only", *_oracle_args(tiny, tmp_path / "one", *extra)])
    multi = _run(
        ["--eval-only", "--num-gpus", "2", "--dist-url", "auto", *_oracle_args(tiny, tmp_path / "two", *extra)]
    )

    def results(d):
        r = json.loads((tmp_path / d / "inference" / "tiny_val" / "results.json").read_text())
        return sorted(r, key=lambda x: (x["video_id"], x["category_id"], x["score"]))

    assert results("one") == results("two")
    line = [ln for ln in single.stdout.splitlines() + single.stderr.splitlines() if "copypaste: " in ln][-1]
    line2 = [ln for ln in multi.stdout.splitlines() + multi.stderr.splitlines() if "copypaste: " in ln][-1]
    assert line.split("copypaste: ")[1] == line2.split("copypaste: ")[1]
    ap = float(line.split("copypaste: ")[1].split(",")[0])
    assert 0 < ap < 100  # perturbed: below the perfect oracle


def test_config_class_count_mismatch_and_bad_keys_fail_clearly(tiny, tmp_path):
    proc = _run(_oracle_args(tiny, tmp_path, "MODEL.NUM_CLASSES", "40"), check=False)
    assert proc.returncode != 0 and "MODEL.NUM_CLASSES is 40 but dataset 'tiny_train' has 2 categories" in proc.stderr
    proc = _run(
        ["--eval-only", *_oracle_args(tiny, tmp_path, "MODEL.NUM_CLASSES", "40", "MODEL.WEIGHTS", "")], check=False
    )
    assert proc.returncode != 0 and "MODEL.NUM_CLASSES is 40 but the class list of dataset 'tiny_val'" in proc.stderr
    proc = _run(["--eval-only", *_oracle_args(tiny, tmp_path, "MODEL.NOT_A_KEY", "1")], check=False)
    assert proc.returncode != 0 and "MODEL.NOT_A_KEY" in proc.stderr
    proc = _run(["--eval-only", "--dataset", "broken", *_oracle_args(tiny, tmp_path)], check=False)
    assert proc.returncode != 0 and "--dataset expects NAME=" in proc.stderr


def test_gt_oracle_without_a_dataset_says_so():
    from detectron2.modeling import build_model

    from vis_config import get_project_cfg

    cfg = get_project_cfg()
    cfg.merge_from_file("configs/oracle/gt_oracle.yaml")
    cfg.merge_from_list(["DATASETS.TEST", "()", "MODEL.ORACLE.DATASET", "", "MODEL.DEVICE", "cpu"])
    with pytest.raises(ValueError, match="the GT oracle needs a dataset: set MODEL.ORACLE.DATASET or DATASETS.TEST"):
        build_model(cfg)
