"""SOLVER.EMA (projects/engine/ema.py): the moving average of the weights follows its recurrence, evaluations run
on it and leave the training weights untouched, model_final.pth holds it, and --resume continues it."""

import copy
import shutil
from types import SimpleNamespace

import pytest
import torch

from projects.engine.ema import ModelEMAHook, ema_decay
from tests.train_cli import run_cli
from tests.ytvis_fixtures import write_tiny_ytvis


def test_decay_ramps_up_to_its_maximum():
    assert ema_decay(0.999, 1) == pytest.approx(2 / 11)
    assert ema_decay(0.999, 90) == pytest.approx(91 / 100)
    assert ema_decay(0.9, 10_000) == 0.9


def _train_step(model):
    """What an optimizer step might do to the weights."""
    with torch.no_grad():
        model.weight.add_(1.0)
        model.bias.mul_(-2.0)


def test_average_recurrence_swap_and_final_copy():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    hook = ModelEMAHook(model, decay=0.5)
    hook.trainer = SimpleNamespace(iter=0, max_iter=4)
    hook.before_train()
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for it in range(3):
        _train_step(model)
        hook.trainer.iter = it
        hook.after_step()
        d = ema_decay(0.5, it + 1)
        expected = {k: d * expected[k] + (1 - d) * v for k, v in model.state_dict().items()}
    raw = {k: v.clone() for k, v in model.state_dict().items()}

    seen = {}
    result = hook.evaluating_average(lambda: seen.update({k: v.clone() for k, v in model.state_dict().items()}) or 7)()
    assert result == 7
    for k in raw:  # the evaluation saw the average, and the training weights came back
        assert torch.allclose(seen[k], expected[k])
        assert torch.equal(model.state_dict()[k], raw[k])

    state = copy.deepcopy(hook.state_dict())  # as a checkpoint stores it
    _train_step(model)
    d = ema_decay(0.5, 4)
    final = {k: d * expected[k] + (1 - d) * v for k, v in model.state_dict().items()}
    last = {k: v.clone() for k, v in model.state_dict().items()}
    hook.trainer.iter = 3
    hook.after_step()  # the last iteration: the average becomes the model
    for k, v in model.state_dict().items():
        assert torch.allclose(v, final[k]) and not torch.allclose(v, last[k])
    after = {k: v.clone() for k, v in model.state_dict().items()}
    hook.evaluating_average(lambda: None)()  # after the copy, evaluations run on the model as is
    for k, v in model.state_dict().items():
        assert torch.equal(v, after[k])

    restored = ModelEMAHook(torch.nn.Linear(3, 2), decay=0.5)
    restored.load_state_dict(state)
    restored.before_train()  # a loaded average is not reset from the weights
    assert all(torch.allclose(a, expected[k]) for k, a in zip(restored._names, restored._average))


def test_decay_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="SOLVER.EMA.DECAY"):
        ModelEMAHook(torch.nn.Linear(1, 1), decay=1.0)


def _train(tiny, out, ema, *extra):
    json_file, image_root = tiny
    args = [
        *extra,
        "--config-file", "configs/oracle/gt_oracle.yaml",
        "--dataset", f"ematiny_train={json_file}:{image_root}",
        "--dataset", f"ematiny_val={json_file}:{image_root}",
        "DATASETS.TRAIN", "('ematiny_train',)", "DATASETS.TEST", "('ematiny_val',)",
        "INPUT.MIN_SIZE_TRAIN", "(32,)", "INPUT.MIN_SIZE_TEST", "32", "SEED", "1",
        "SOLVER.MAX_ITER", str(MAX_ITER), "SOLVER.CHECKPOINT_PERIOD", "1",
        "SOLVER.EMA.ENABLED", str(ema), "SOLVER.EMA.DECAY", "0.8", "OUTPUT_DIR", str(out),
    ]  # fmt: skip
    proc = run_cli("train_net.py", args)
    assert proc.returncode == 0, proc.stderr[-4000:]


MAX_ITER = 8


def _logit(path, key="model"):
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    return ckpt[key]["average"]["score_logit"] if key == "model_ema" else ckpt[key]["score_logit"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    json_file, image_root, _ = write_tiny_ytvis(str(tmp_path_factory.mktemp("ema_ytvis")), num_videos=2, length=3)
    return json_file, image_root


def test_training_writes_the_average_and_resume_continues_it(tiny, tmp_path):
    """The GT oracle's one weight (its score logit) trains the same whatever the data, so a run without EMA gives
    the weights after every iteration: the EMA run's saved averages and its model_final.pth must follow the
    recurrence over them, and a resume from the middle must reach the same final average."""
    plain = tmp_path / "plain"
    _train(tiny, plain, False)
    weights = [_logit(plain / f"model_{it:07d}.pth") for it in range(MAX_ITER)]
    assert torch.equal(_logit(plain / "model_final.pth"), weights[-1])

    out = tmp_path / "ema"
    _train(tiny, out, True)
    average = torch.zeros(())  # the initial weight
    for it in range(MAX_ITER):
        d = ema_decay(0.8, it + 1)
        average = d * average + (1 - d) * weights[it]
        if it < MAX_ITER - 1:
            assert torch.equal(_logit(out / f"model_{it:07d}.pth"), weights[it])  # training is unchanged
            assert torch.allclose(_logit(out / f"model_{it:07d}.pth", "model_ema"), average)
    assert not torch.allclose(average, weights[-1])
    assert torch.allclose(_logit(out / "model_final.pth"), average)  # the final model is the average

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(out / "model_0000003.pth", resumed / "model_0000003.pth")
    (resumed / "last_checkpoint").write_text("model_0000003.pth")
    _train(tiny, resumed, True, "--resume")
    assert torch.allclose(_logit(resumed / "model_final.pth"), average, atol=1e-6)
