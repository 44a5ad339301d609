"""The run facts (tooling.run_facts) as each caller records them: ``make reproduce``'s
``run`` in results/metrics.json and ``make bench``'s top level of benchmarks/results.json
keep their keys and formats."""

import re

from benchmarks import report
from tooling import reproduce, run_facts

DATE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC$")
COMMIT = re.compile(r"^([0-9a-f]{4,40}(-dirty)?|unknown)$")


def test_reproduce_records_the_machine_as_one_line():
    info = reproduce.run_info("ci", seed=3)
    assert list(info) == [
        "date",
        "commit",
        "machine",
        "python",
        "tensorflow",
        "keras",
        "full_size",
        "seed",
        "training_precision",
    ]
    assert info["training_precision"] in ("float32", "mixed_bfloat16")
    assert DATE.match(info["date"]) and COMMIT.match(info["commit"])
    assert re.match(r"^.+, \d+ cores, (no GPU|GPU)$", info["machine"]), info["machine"]
    assert info["full_size"] is False and info["seed"] == 3
    assert reproduce.run_info("full")["full_size"] is True


def test_bench_records_the_machine_as_a_dict_and_numpy():
    facts = report.run_facts()
    assert list(facts) == ["date", "commit", "machine", "python", "tensorflow", "keras", "numpy"]
    assert DATE.match(facts["date"]) and COMMIT.match(facts["commit"])
    machine = facts["machine"]
    assert list(machine) == ["cores", "cpu", "gpu"]
    assert machine["cores"] >= 1 and machine["cpu"] == run_facts.cpu_model()
    assert isinstance(machine["gpu"], bool)


def test_git_commit_outside_a_repository_is_unknown(tmp_path):
    assert run_facts.git_commit(tmp_path) == "unknown"
    assert COMMIT.match(run_facts.git_commit())
