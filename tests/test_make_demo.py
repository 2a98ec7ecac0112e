"""``make demo`` (``scripts/demo.sh``), the first command a new user runs, end to end on both models with
2-iteration trainings: data, the evaluator's oracle check, both RGNN-VIS stages, evaluation, the demo videos and
the README pictures. A wrong ``MODELS`` fails at once."""

import os
import subprocess

from tests.train_cli import ROOT, cli_env


def _demo(tmp_path, **env):
    return subprocess.run(
        ["bash", "scripts/demo.sh"],
        cwd=ROOT,
        env=cli_env(OUT=str(tmp_path / "demo"), **env),
        capture_output=True,
        text=True,
        timeout=1200,
    )


def test_make_demo_runs_both_models(tmp_path):
    proc = _demo(tmp_path, MODELS="vis_stg vis_rgnn", DEMO_ITERS="2")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "demo"
    assert "copypaste: AP" in proc.stdout  # the oracle's and each model's evaluation printed their AP
    for name in ("vis_stg", "vis_rgnn_stage1", "vis_rgnn"):
        assert (out / name / "inference" / "synthetic_vis_val" / "results.json").is_file(), name
    for model in ("vis_stg", "vis_rgnn"):
        for suffix in (".mp4", ".json"):
            path = out / f"demo_{model}{suffix}"
            assert path.is_file() and path.stat().st_size > 0, path
        # A 2-iteration model may find no track: then the picture is skipped with a note, not a failure.
        drawn = f"demo picture: {out}/demo_{model}.png" in proc.stdout
        assert drawn == (out / f"demo_{model}.png").is_file()
        assert drawn or f"no demo picture for {model}: it found no track" in proc.stdout


def test_unknown_model_fails_before_any_work(tmp_path):
    proc = _demo(tmp_path, MODELS="vis_stg maskrcnn")
    assert proc.returncode == 2
    assert "unknown model 'maskrcnn'" in proc.stderr
    assert not os.path.exists(tmp_path / "demo")
