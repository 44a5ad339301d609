"""Written answers graded by hand (tooling/written.py): collected, then added to the grades."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from helpers.paths import NOTEBOOKS_DIR
from tooling import written
from tooling.classroom import SOLUTION_MARKERS, load_notebook
from tooling.series import NOTEBOOKS


def _answer_cell(grade_id: str, text: str, points: float = 2) -> dict:
    meta = {"grade": True, "solution": True, "grade_id": grade_id, "points": points}
    return {"cell_type": "markdown", "metadata": {"nbgrader": meta}, "source": text}


def _notebook(*cells: dict) -> dict:
    plain = {"cell_type": "markdown", "metadata": {}, "source": "Prose, not an answer."}
    code = {"cell_type": "code", "metadata": {"nbgrader": {"solution": True, "grade": True}}}
    return {"cells": [plain, {**code, "source": "x = 1"}, *cells]}


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_written_cells_are_the_markdown_cells_graded_by_hand():
    nb = _notebook(_answer_cell("q1", "### BEGIN SOLUTION\nModel.\n\nRubric.\n### END SOLUTION"))
    assert [a["question"] for a in written.written_answers(nb)] == ["q1"]
    assert written.model_answers(nb) == {"q1": "Model.\n\nRubric."}


@pytest.mark.parametrize(
    "notebook", [n for n in NOTEBOOKS if n[:2] in ("03", "04", "05", "06", "07")]
)
def test_notebooks_03_to_07_each_ask_a_written_question_with_a_hidden_model_answer(notebook):
    nb = load_notebook(NOTEBOOKS_DIR / notebook)
    cells = [c for c in nb["cells"] if written.is_written_cell(c)]
    assert len(cells) >= 1
    for cell in cells:
        lines = [ln.strip() for ln in "".join(cell["source"]).splitlines()]
        assert lines[0] == SOLUTION_MARKERS[0] and lines[-1] == SOLUTION_MARKERS[1]
        assert any("Rubric" in ln for ln in lines) and any("Model answer" in ln for ln in lines)
        assert cell["metadata"]["nbgrader"]["points"] > 0


def test_answer_rows_fill_zero_for_the_untouched_stub(tmp_path):
    paths = {}
    for student, text in (("ada", "Because the gradient's sign..."), ("bob", written.STUB)):
        paths[(student, "03")] = tmp_path / f"{student}.ipynb"
        paths[(student, "03")].write_text(json.dumps(_notebook(_answer_cell("q1", text))))
    grades = [
        {"student": "ada", "assignment": "03", "status": "needs manual grading"},
        {"student": "bob", "assignment": "03", "status": "graded"},
        {"student": "cy", "assignment": "03", "status": "missing"},
    ]
    rows = written.answer_rows(grades, paths)
    assert [(r["student"], r["points"]) for r in rows] == [("ada", ""), ("bob", 0.0)]
    assert rows[0]["answer"] == "Because the gradient's sign..." and rows[0]["max_score"] == 2


def test_add_written_adds_the_points_and_settles_the_status(tmp_path):
    grades = _write_csv(
        tmp_path / "grades.csv",
        [
            {"student": "ada", "assignment": "03", "score": 8, "max_score": 12,
             "status": "needs manual grading"},
            {"student": "bob", "assignment": "03", "score": 3, "max_score": 12,
             "status": "needs manual grading"},
            {"student": "cy", "assignment": "03", "score": 0, "max_score": 12, "status": "missing"},
        ],
    )  # fmt: skip
    rows = [
        {"student": "ada", "assignment": "03", "question": "q1", "max_score": 2, "answer": "a",
         "points": 1.5},
        {"student": "bob", "assignment": "03", "question": "q1", "max_score": 2, "answer": "b",
         "points": ""},
    ]  # fmt: skip
    answers = written.write_answers(rows, tmp_path / "grades_written.csv")
    final = _read_csv(written.add_written(grades, answers))
    assert [(r["student"], float(r["score"]), r["status"]) for r in final] == [
        ("ada", 9.5, "graded"),
        ("bob", 3.0, "needs manual grading (1 answers)"),
        ("cy", 0.0, "missing"),
    ]


@pytest.mark.parametrize(("points", "message"), [("3", "between 0 and 2"), ("two", "a number")])
def test_add_written_refuses_points_it_cannot_add(tmp_path, points, message):
    grades = _write_csv(
        tmp_path / "grades.csv",
        [{"student": "ada", "assignment": "03", "score": 8, "max_score": 12, "status": "graded"}],
    )
    row = {"student": "ada", "assignment": "03", "question": "q1", "max_score": 2, "answer": "a"}
    answers = written.write_answers([{**row, "points": points}], tmp_path / "w.csv")
    with pytest.raises(ValueError, match=message):
        written.add_written(grades, answers)
    assert not (tmp_path / "grades_final.csv").exists()


def test_add_written_refuses_an_answer_of_an_unknown_student(tmp_path):
    grades = _write_csv(
        tmp_path / "grades.csv",
        [{"student": "ada", "assignment": "03", "score": 8, "max_score": 12, "status": "graded"}],
    )
    row = {"student": "zed", "assignment": "03", "question": "q1", "max_score": 2, "answer": "a"}
    answers = written.write_answers([{**row, "points": 1}], tmp_path / "w.csv")
    with pytest.raises(ValueError, match="not in"):
        written.add_written(grades, answers)
