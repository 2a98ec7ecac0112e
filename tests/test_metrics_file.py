"""Metrics files are strict JSON: ``null`` where a value is undefined (NaN / inf), never a bare ``NaN``."""

import json
import math

import numpy as np
import pytest
from detectron2.utils.events import EventStorage, JSONWriter

from projects.engine.metrics_file import (
    StrictJSONWriter,
    dumps_strict,
    read_segm_metrics,
    strict_default_writers,
    to_strict_json,
    truncate_metrics_for_resume,
)


def strict_loads(text):
    """A strict parser (as jq / JavaScript): refuses NaN, Infinity and -Infinity."""

    def refuse(token):
        raise ValueError(f"not strict JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_dumps_strict_writes_null_for_undefined_values():
    record = {"AP": 12.5, "APl": math.nan, "nested": [math.inf, -math.inf, np.float32("nan"), np.float64(2.0)]}
    text = dumps_strict(record)
    assert strict_loads(text) == {"AP": 12.5, "APl": None, "nested": [None, None, None, 2.0]}
    with pytest.raises(ValueError, match="not strict JSON"):  # what json.dumps writes by default
        strict_loads(json.dumps(record["APl"]))


def _write(writer_cls, path, values):
    writer = writer_cls(str(path))
    with EventStorage(0) as storage:
        for it, value in enumerate(values):
            storage.iter = it
            storage.put_scalar("total_loss", value, smoothing_hint=False)
            storage.put_scalar("segm/APl", math.nan, smoothing_hint=False)  # undefined metric (no large GT)
            writer.write()
    writer.close()
    return path.read_text()


def test_strict_json_writer_writes_the_same_records_with_null(tmp_path):
    plain = _write(JSONWriter, tmp_path / "plain.json", [1.0, math.nan, 0.5])
    strict = _write(StrictJSONWriter, tmp_path / "metrics.json", [1.0, math.nan, 0.5])
    with pytest.raises(ValueError, match="not strict JSON"):  # detectron2's writer: bare NaN
        [strict_loads(line) for line in plain.splitlines()]
    records = [strict_loads(line) for line in strict.splitlines()]
    assert records == [
        {"iteration": 0, "total_loss": 1.0, "segm/APl": None},
        {"iteration": 1, "total_loss": None, "segm/APl": None},
        {"iteration": 2, "total_loss": 0.5, "segm/APl": None},
    ]
    assert [to_strict_json(json.loads(line)) for line in plain.splitlines()] == records  # same records otherwise
    assert strict.endswith("\n")
    # the resume repair reads the strict file like any other
    assert truncate_metrics_for_resume(str(tmp_path / "metrics.json"), 2) == (2, 1)


def test_strict_default_writers_replace_only_the_json_writer(tmp_path):
    writers = strict_default_writers(str(tmp_path), 10)
    try:
        assert [type(w).__name__ for w in writers] == ["CommonMetricPrinter", "StrictJSONWriter", "TensorboardXWriter"]
        assert writers[1]._file_handle.name == str(tmp_path / "metrics.json")
    finally:
        for w in writers:
            w.close()


def test_read_segm_metrics_reads_null_back_as_nan(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(dumps_strict({"dataset": "d", "segm": {"AP": 12.5, "APl": float("nan")}}))
    assert "NaN" not in path.read_text()
    segm = read_segm_metrics(str(path))
    assert segm["AP"] == 12.5 and math.isnan(segm["APl"])
