"""The student kit's instructions say what JupyterLab does at an unsolved exercise."""

import zipfile

from helpers.paths import NOTEBOOKS_DIR
from tooling import classroom


def test_kit_says_run_all_stops_at_an_unsolved_exercise_and_how_to_go_on(tmp_path):
    kit = classroom.write_student_kit(tmp_path, [], NOTEBOOKS_DIR)
    with zipfile.ZipFile(kit) as zf:
        text = " ".join(zf.read(f"{classroom.COURSE_ID}/STUDENTS.md").decode().split())
    assert '"Run All" stops at the first exercise you have not solved yet' in text
    assert '"Run Selected Cell and All Below"' in text
    assert "always run the whole notebook" not in text  # what Run All does not do
    assert text.endswith("Graded: none.")
