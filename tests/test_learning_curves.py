"""experiments/learning_curves.py: AP evaluations read from metrics.json, drawn against training time."""

import json

import pytest

from experiments.learning_curves import evaluations, main


def _run(tmp_path, name, records):
    run = tmp_path / name
    run.mkdir()
    (run / "metrics.json").write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(run)


def test_evaluations_and_plot(tmp_path):
    run = _run(
        tmp_path,
        "a",
        [{"iteration": 19, "total_loss": 3.0}, {"iteration": 99, "segm/AP": 12.5}, {"iteration": 199, "segm/AP": 30.0}],
    )
    assert evaluations(run) == [(100, 12.5), (200, 30.0)]
    out = tmp_path / "curve.png"
    main(
        [
            "--run",
            "a",
            run,
            "0.5",
            "--offset",
            "3",
            "--point",
            "before",
            "14",
            "20",
            "--budget",
            "15",
            "--out",
            str(out),
        ]
    )
    assert out.read_bytes()[:4] == b"\x89PNG"


def test_run_without_evaluations_is_named(tmp_path):
    run = _run(tmp_path, "b", [{"iteration": 19, "total_loss": 3.0}])
    with pytest.raises(ValueError, match="no segm/AP"):
        evaluations(run)
