"""The measured answers to the notebooks' discussion questions (tooling.answers): which
questions they answer, the cheap measurements on a tiny model, and the guide's table."""

from __future__ import annotations

import json
import re

import pytest

from helpers import artifacts
from helpers.paths import NOTEBOOKS_DIR
from tooling import answers
from tooling.series import NOTEBOOKS


def discussion_questions(notebook: str) -> dict[int, str]:
    """``{k: text}`` of the numbered questions under a notebook's "## Exercises" heading."""
    cells = json.loads((NOTEBOOKS_DIR / notebook).read_text())["cells"]
    text = next(
        "".join(c["source"]) for c in reversed(cells) if "## Exercises" in "".join(c["source"])
    )
    tail = text.split("## Exercises", 1)[1]
    parts = re.split(r"^(\d+)\. ", tail, flags=re.M)  # [before, "1", text, "2", text, ...]
    return {
        int(k): " ".join(text.split()) for k, text in zip(parts[1::2], parts[2::2], strict=True)
    }


def test_every_answer_belongs_to_a_discussion_question_that_asks_for_it():
    """Each key ``NN.k`` names question k of notebook NN; a renumbered list fails here."""
    for question in answers.QUESTIONS:
        number, k = question.key.split(".")
        notebook = next(n for n in NOTEBOOKS if n.startswith(number))
        assert int(k) in discussion_questions(notebook), question.key
    asked = {
        "04.3": "eps=0.4",
        "04.4": "steps=2",
        "06.4": "AA_TARGETS = 9",
        "07.1": "eps=0.4",
        "07.4": "apgd_steps=100, queries=5000",
        "04.6": "steps=1, beta=3.0",
    }
    for key, setting in asked.items():
        number, k = key.split(".")
        notebook = next(n for n in NOTEBOOKS if n.startswith(number))
        assert setting in discussion_questions(notebook)[int(k)], key


def test_settings_come_from_the_notebooks_parameters_at_each_size():
    assert answers.params("06", "full")["N_HEADLINE"] == 1000
    assert answers.params("06", "ci")["N_HEADLINE"] == 200  # tooling.series' CI size
    with pytest.raises(StopIteration):
        answers.params("09", "full")


@pytest.mark.parametrize(
    ("curve", "expected"),
    [
        ({"0": 1.0, "0.1": 0.6, "0.2": 0.4}, 0.15),  # halfway between 0.6 and 0.4
        ({"0.2": 0.4, "0": 1.0, "0.1": 0.6}, 0.15),  # the keys' order does not matter
        ({"0": 1.0, "0.3": 0.9}, None),  # never below 50%
        ({"0": 0.3, "0.1": 0.1}, 0.0),  # below from the start
        ({"0": 1.0, "0.1": 0.4, "0.2": 0.6, "0.3": 0.2}, 1 / 12),  # the first fall
    ],
)
def test_crossing_interpolates_the_first_budget_below_a_level(curve, expected):
    found = answers.crossing(curve)
    assert found is None if expected is None else found == pytest.approx(expected)


def test_cheap_answers_on_a_tiny_model_hold_what_they_say(trained_cnn):
    """Measured on the session's tiny CNN, saved as the course models these answers load."""
    for name in ("standard", "pgd_at", "ibp_at"):
        artifacts.save_model(trained_cnn, name)
    answers.model.cache_clear()
    zero = answers.zero_pixels("ci")
    assert 0.5 < zero["zero_share"] < 1 and zero["grey"] == pytest.approx(0.25 * 255)
    shares = answers.validation_shares("ci")
    stray = shares["random_subset_stray"]
    assert stray["100"] > stray["6000"] > 0  # a small random subset strays further
    wrong = answers.most_confident_wrong("ci")
    assert wrong["label"] != wrong["predicted"] and 0.1 < wrong["confidence"] <= 1
    scaled = answers.scaled_gradient("ci")
    assert 0 < scaled["mean_pixel_move"]["scaled"] <= scaled["eps"]
    assert scaled["sign"] <= scaled["scaled"] + 0.05  # the sign moves every pixel the most
    fan = answers.fan_in("ci")
    conv = [v for k, v in fan["inputs_per_unit"].items() if k.startswith("conv")]
    assert conv[0] == 3 * 3 * 1 and fan["inputs_per_unit"]["logits"] > conv[0]
    widths = list(fan["box_width"].values())
    assert widths[-1] > widths[0] > 0  # the box widens on its way to the logits
    band = answers.stronger_attack("ci")
    assert band["settings"]["stronger"]["queries"] > band["settings"]["notebook"]["queries"]
    for edges in band["budgets"].values():  # a proof is a lower bound under every attack
        for attack in ("notebook", "stronger"):
            assert edges["certified"] <= edges[attack]["robust"]
            assert edges[attack]["certified_but_broken"] == 0
    answers.model.cache_clear()

    stored = {
        "run": {"machine": "a test", "size": "ci", "models_from": "abc1234"},
        "answers": {
            key: {"measured": m, "date": "2026-12-05 12:00 UTC", "commit": "f00", "machine": "M"}
            for key, m in {"01.2": zero, "03.3": scaled, "07.3": fan, "07.4": band}.items()
        },
    }
    table = answers.guide_table(stored)
    rows = [line for line in table.splitlines() if line.startswith("| 0")]
    assert [row.split(" | ")[0] for row in rows] == ["| 01.2", "| 03.3", "| 07.3", "| 07.4"]
    assert "certified digits broken: 0" in rows[3]
    assert f"{100 * zero['zero_share']:.1f}%" in rows[0]
    assert "`abc1234`" in table and "2026-12-05" in table


def test_each_answer_is_stored_as_it_is_measured_and_another_runs_answers_dropped(tmp_path):
    out = tmp_path / "answers.json"
    answers.store(out, "ci", "03.3", {"measured": {"a": 1}})
    answers.store(out, "ci", "01.2", {"measured": {"a": 2}})
    stored = json.loads(out.read_text())
    assert list(stored["answers"]) == ["01.2", "03.3"]  # both kept, in the course's order
    assert stored["run"]["size"] == "ci"
    answers.store(out, "full", "05.1", {"measured": {}})  # another size: the others go
    assert list(json.loads(out.read_text())["answers"]) == ["05.1"]


def test_a_run_records_the_commit_it_started_from_not_its_own_output(tmp_path, monkeypatch):
    """Facts are read once, before the first answer writes the (tracked) answers file."""
    commits = iter(["abc1234", "abc1234-dirty"])
    monkeypatch.setattr(
        answers,
        "BY_KEY",
        {
            k: answers.BY_KEY[k]._replace(measure=lambda size: {}, show=lambda m: "")
            for k in ("01.2", "03.3")
        },
    )
    monkeypatch.setattr(
        "tooling.run_facts.run_facts",
        lambda machine: {
            "date": "2026-12-06 01:00 UTC",
            "commit": next(commits),
            "machine": machine,
        },
    )
    out = tmp_path / "answers.json"
    answers.run(["01.2", "03.3"], "ci", out)
    stored = json.loads(out.read_text())["answers"]
    assert {a["commit"] for a in stored.values()} == {"abc1234"}


def test_a_missing_model_says_which_notebook_makes_it():
    answers.model.cache_clear()
    with pytest.raises(FileNotFoundError, match="04_adversarial_training"):
        answers.pgd_restarts("ci")
    answers.model.cache_clear()


def test_unknown_questions_are_refused_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="unknown questions"):
        answers.run(["04.1", "09.9"], "ci", tmp_path / "answers.json")
    assert not (tmp_path / "answers.json").exists()


def test_show_functions_read_a_full_run_of_each_answer_shape():
    """Every question's line renders from values shaped as its measure returns them."""
    curve = {"per_epoch": [0.1, 0.5], "best_epoch": 2, "best": 0.5, "last": 0.5}
    point = {"clean": 0.95, "fgsm": 0.9, "robust": 0.8}
    line = answers.show_ramp({"ramp": curve, "no_start": curve, "random_start": curve})
    assert "10 → 50%" in line and "after epoch 2" in line
    assert "80.0%" in answers.show_one_step({"one_step": point, "five_steps": point, "pgd": point})
    half = answers.show_half_accuracy({"curve": {}, "half_at": None, "n": 10})
    assert "never" in half
    assert list(answers.BY_KEY) == sorted(answers.BY_KEY)  # in the course order, each once
    assert len(answers.BY_KEY) == len(answers.QUESTIONS)
