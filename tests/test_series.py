"""The series runner of tooling/series.py without executing a notebook: sizes, the size
notes found in an executed notebook, and `python -m tooling.series` with papermill faked."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tooling import series

NOTE_03 = "Note: at this size only 0.4% of the digits saturate the softmax."
NOTE_06 = "Note: at this size the model trained at ε = 0.5 has not learned to read the label."


def _code(source: str, *outputs: dict) -> dict:
    return {"cell_type": "code", "metadata": {}, "source": source, "outputs": list(outputs)}


def _stdout(text) -> dict:
    return {"output_type": "stream", "name": "stdout", "text": text}


def executed_notebook(*notes: str, parameters: dict | None = None) -> dict:
    """A hand-made executed notebook: a size-note cell that printed each of ``notes``,
    beside cells that mention the phrase without printing it."""
    return {
        "metadata": {"papermill": {"duration": 12.5, "parameters": parameters or {}}},
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": "Note: at this size, it says"},
            _code('if False:\n    print("Note: at this size ...")'),  # printed nothing
            _code("x", {"output_type": "execute_result", "data": {"text/plain": "'no note'"}}),
            _code(
                "size note",
                _stdout(["accuracy 91.0%\n", *(f"{note}\n" for note in notes)]),
                _stdout("done\n"),
            ),
            _code("a result", {"output_type": "display_data", "data": {"image/png": "iVBO"}}),
        ],
    }


def test_size_notes_are_the_printed_lines_only():
    assert series.size_notes(executed_notebook()) == []
    assert series.size_notes(executed_notebook(NOTE_03, NOTE_06)) == [NOTE_03, NOTE_06]
    text_output = {"cells": [_code("", _stdout(f"  {NOTE_06}\nnext line"))]}
    assert series.size_notes(text_output) == [NOTE_06]
    assert series.size_notes({"cells": []}) == []


def test_parameters_for_each_size():
    nb02 = "02_training_a_cnn.ipynb"
    assert series.parameters_for(nb02, "full") == {}
    assert series.parameters_for(nb02, "ci") == series.CI_PARAMETERS[nb02]
    assert series.parameters_for(nb02, "classroom") == series.CLASSROOM_PARAMETERS[nb02]
    series.parameters_for(nb02, "classroom")["EPOCHS"] = 99  # a copy
    assert series.CLASSROOM_PARAMETERS[nb02]["EPOCHS"] != 99
    assert set(series.CLASSROOM_PARAMETERS) == set(series.NOTEBOOKS)
    with pytest.raises(ValueError, match="size must be one of"):
        series.parameters_for(nb02, "huge")
    with pytest.raises(ValueError, match="unknown notebook"):
        series.parameters_for("99_missing.ipynb", "ci")


@pytest.fixture
def fake_papermill(monkeypatch):
    """``series.run_notebook`` replaced: it writes an executed copy (notebook 04's with a
    size note) and records the artifacts folder each kernel would have inherited."""
    calls: list[tuple[str, str]] = []

    def fake_run(notebook, output_dir, size):
        calls.append((notebook, os.environ["MNIST_AD_ARTIFACTS"]))
        notes = [NOTE_03] if notebook.startswith("04") else []
        output_dir.mkdir(parents=True, exist_ok=True)
        path = output_dir / notebook
        parameters = series.parameters_for(notebook, size)
        path.write_text(json.dumps(executed_notebook(*notes, parameters=parameters)))
        return path, 10.0 + len(calls)

    monkeypatch.setattr(series, "run_notebook", fake_run)
    return calls


def test_the_series_runs_in_order_with_one_artifacts_folder(tmp_path, fake_papermill):
    before = os.environ.get("MNIST_AD_ARTIFACTS")
    record = series.run_series("classroom", tmp_path / "out")
    artifacts = str((tmp_path / "out" / "artifacts").resolve())
    assert fake_papermill == [(nb, artifacts) for nb in series.NOTEBOOKS]
    assert os.environ.get("MNIST_AD_ARTIFACTS") == before
    written = json.loads((tmp_path / "out" / "times.json").read_text())
    assert written == record
    assert record["size"] == "classroom" and record["complete"]
    assert list(record["notebooks"]) == list(series.NOTEBOOKS)
    entry = record["notebooks"]["04_adversarial_training.ipynb"]
    assert entry == {
        "seconds": 14.0,
        "parameters": series.CLASSROOM_PARAMETERS["04_adversarial_training.ipynb"],
        "size_notes": [NOTE_03],
    }
    assert record["total_seconds"] == sum(10.0 + i for i in range(1, 8))
    assert not list((tmp_path / "out").glob(".times*"))  # no scratch file left
    assert "04_adversarial_training.ipynb" in series.summary(record)
    assert NOTE_03 in series.summary(record)


def test_a_rerun_from_a_notebook_keeps_the_earlier_ones(tmp_path, fake_papermill):
    out = tmp_path / "out"
    series.run_series("classroom", out)
    fake_papermill.clear()
    models = out / "artifacts" / "models"
    models.mkdir(parents=True)
    for name in ("standard", "pgd_at", "ibp_at"):
        (models / f"{name}.keras").write_bytes(b"from the first run")
    record = series.run_series("classroom", out, start_at="04")
    assert [nb for nb, _ in fake_papermill] == list(series.NOTEBOOKS[3:])
    assert sorted(p.name for p in models.iterdir()) == ["standard.keras"]  # 04's and 07's go
    kept = record["notebooks"]["02_training_a_cnn.ipynb"]
    assert kept["seconds"] == 12.5 and kept["kept_from_earlier_run"]  # papermill's duration
    assert record["complete"]
    with pytest.raises(ValueError, match="ran with"):  # kept copies must be of the same size
        series.run_series("ci", out, start_at="04")
    with pytest.raises(ValueError, match="must name one notebook"):
        series.run_series("classroom", out, start_at="0")


def test_a_failed_notebook_leaves_the_times_of_those_before(tmp_path, fake_papermill, monkeypatch):
    ran = series.run_notebook

    def failing(notebook, output_dir, size):
        if notebook.startswith("03"):
            raise RuntimeError("cell 9 failed")
        return ran(notebook, output_dir, size)

    monkeypatch.setattr(series, "run_notebook", failing)
    with pytest.raises(RuntimeError, match="cell 9"):
        series.run_series("classroom", tmp_path)
    record = json.loads((tmp_path / "times.json").read_text())
    assert list(record["notebooks"]) == list(series.NOTEBOOKS[:2]) and not record["complete"]


def test_the_command_line_writes_times_and_prints_the_table(tmp_path, fake_papermill, capsys):
    assert series.main(["--size", "ci", "--out", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    assert "total" in shown and NOTE_03 in shown and str(Path(tmp_path) / "times.json") in shown
    assert json.loads((tmp_path / "times.json").read_text())["size"] == "ci"
    assert series.main(["--out", str(tmp_path), "--from", "nope"]) == 1
    assert "must name one notebook" in capsys.readouterr().err
