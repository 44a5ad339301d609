"""Written answers: the exercises a teacher grades by hand, beside the autograded ones.

A written exercise is a Markdown answer cell that nbgrader grades by hand (its metadata:
``solution`` and ``grade`` true, with ``points``). In the course notebooks it holds the
model answer and the rubric between ``### BEGIN SOLUTION`` and ``### END SOLUTION``; the
student release has nbgrader's stub :data:`STUB` in its place.

``make grade`` autogrades everything else and writes, beside ``grades.csv``,
``grades_written.csv``: one row per student and written answer, with the answer's text, the
most it can score and an empty ``points`` column (0 already filled in where the student left
the stub: nothing was written). The teacher fills in ``points`` (in a spreadsheet, say)
against the model answer and rubric (``model_answers``), and ``make written`` adds them to
the autograded scores in ``grades_final.csv``: a row is ``graded`` once every written
answer of it has its points, else ``needs manual grading (N answers)``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from helpers.paths import write_atomically
from tooling.classroom import SOLUTION_MARKERS, cell_text

#: What nbgrader's release puts in place of a written answer (ClearSolutions.text_stub).
STUB = "YOUR ANSWER HERE"
#: Statuses of grades.csv whose notebooks were graded, so their written answers count.
GRADED_STATUSES = ("graded", "needs manual grading")
FIELDS = ("student", "assignment", "question", "max_score", "answer", "points")


def is_written_cell(cell: Mapping[str, Any]) -> bool:
    """A Markdown cell that nbgrader grades by hand (a solution cell with points)."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.get("cell_type") == "markdown" and bool(meta.get("solution") and meta.get("grade"))


def written_answers(nb: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``[{"question": grade id, "max_score": points, "answer": text}]`` of a notebook."""
    return [
        {
            "question": cell["metadata"]["nbgrader"]["grade_id"],
            "max_score": float(cell["metadata"]["nbgrader"].get("points", 0)),
            "answer": cell_text(cell).strip(),
        }
        for cell in nb["cells"]
        if is_written_cell(cell)
    ]


def model_answers(nb: Mapping[str, Any]) -> dict[str, str]:
    """The instructor version's model answer and rubric, by question (the text between the
    solution markers of each written cell)."""
    found = {}
    for answer in written_answers(nb):
        lines = answer["answer"].splitlines()
        inside = [ln for ln in lines if ln.strip() not in SOLUTION_MARKERS]
        found[answer["question"]] = "\n".join(inside).strip()
    return found


def answer_rows(
    grades: Iterable[Mapping[str, Any]], notebook_of: Mapping[tuple[str, str], Path]
) -> list[dict[str, Any]]:
    """The rows of ``grades_written.csv`` for the graded rows of ``grades`` (grades.csv's
    rows); ``notebook_of[(student, assignment)]``: that student's graded notebook."""
    rows = []
    for grade in grades:
        key = (grade["student"], grade["assignment"])
        if grade["status"] not in GRADED_STATUSES or key not in notebook_of:
            continue
        nb = json.loads(Path(notebook_of[key]).read_text())
        for answer in written_answers(nb):
            blank = answer["answer"] in ("", STUB)
            rows.append({"student": key[0], "assignment": key[1], **answer,
                         "points": 0.0 if blank else ""})  # fmt: skip
    return rows


def _points(row: Mapping[str, str], line: int) -> float | None:
    """A filled-in ``points`` cell as a number in [0, max_score]; ``None`` if still empty."""
    text = (row.get("points") or "").strip()
    if not text:
        return None
    where = f"row {line} ({row['student']}, {row['question']})"
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: points must be a number, got {text!r}") from None
    most = float(row["max_score"])
    if not 0 <= value <= most:
        raise ValueError(f"{where}: points must be between 0 and {most:g}, got {value:g}")
    return value


def add_written(grades_csv: Path, written_csv: Path, out: Path | None = None) -> Path:
    """Add the teacher's points of ``written_csv`` to the scores of ``grades_csv``; write
    ``out`` (default ``<grades>_final.csv``) in one step and return it. Raises
    ``ValueError`` naming the row for points that are not a number in [0, max_score], and
    for answers of a student or assignment that ``grades_csv`` does not have."""
    grades = _read(grades_csv)
    written = _read(written_csv)
    if written and set(written[0]) != set(FIELDS):
        raise ValueError(f"{written_csv}: expected the columns {', '.join(FIELDS)}")
    known = {(g["student"], g["assignment"]) for g in grades}
    added: dict[tuple[str, str], float] = {}
    open_answers: dict[tuple[str, str], int] = {}
    for line, row in enumerate(written, start=2):  # line 1 is the header
        key = (row["student"], row["assignment"])
        if key not in known:
            raise ValueError(f"{written_csv} row {line}: {key} is not in {grades_csv}")
        value = _points(row, line)
        if value is None:
            open_answers[key] = open_answers.get(key, 0) + 1
        else:
            added[key] = added.get(key, 0.0) + value
    final = []
    for grade in grades:
        key = (grade["student"], grade["assignment"])
        row = {**grade, "score": float(grade["score"]) + added.get(key, 0.0)}
        if grade["status"] in GRADED_STATUSES:
            n = open_answers.get(key, 0)
            row["status"] = f"needs manual grading ({n} answers)" if n else "graded"
        final.append(row)
    out = Path(out) if out is not None else grades_csv.with_name(f"{grades_csv.stem}_final.csv")
    with write_atomically(out) as scratch:
        _write(final, scratch, list(grades[0]) if grades else ["student"])
    return out


def write_answers(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write ``grades_written.csv`` in one step (the header even when there are no rows)."""
    with write_atomically(path) as scratch:
        _write(rows, scratch, list(FIELDS))
    return path


def _read(path: Path) -> list[dict[str, str]]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"no table at {path}: run `make grade` first")
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


def _write(rows: list[dict[str, Any]], path: Path, fields: list[str]) -> None:
    with Path(path).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
