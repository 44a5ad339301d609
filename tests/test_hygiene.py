"""Cheap checks on the notebooks as files: structure, parameters, no committed outputs."""

import ast
import json
import re

import pytest

from helpers.paths import NOTEBOOKS_DIR, PROJECT_ROOT
from tooling.series import CI_PARAMETERS, CLASSROOM_PARAMETERS, NOTEBOOKS, notebook_parameters

PATHS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))


def load(path):
    return json.loads(path.read_text())


def code_cells(nb):
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def parameter_names(path):
    """Names assigned in the notebook's parameters cell, in order."""
    return list(notebook_parameters(path))


def test_training_notebooks_hold_sizes_not_recipes():
    """The recipes live in helpers.registry alone: notebooks 02 and 04 choose only how much
    to train (None: the recipe's epochs), so no second copy of a setting can drift. Notebook
    04's TRADES sweep also chooses its values of β (the experiment, not a recipe: every
    other setting is the registry's "trades_at") and the size of its evaluation, and the
    number of test images its clean and FGSM accuracies are measured on."""
    nb02 = notebook_parameters(NOTEBOOKS_DIR / "02_training_a_cnn.ipynb")
    nb04 = notebook_parameters(NOTEBOOKS_DIR / "04_adversarial_training.ipynb")
    assert set(nb02) == {"SEED", "N_TRAIN", "EPOCHS"}
    sweep = {"TRADES_BETAS", "TRADES_N_TRAIN", "TRADES_EPOCHS", "N_ATTACK"}
    evaluation = {"N_TEST", "AA_APGD_STEPS", "AA_TARGETS", "AA_QUERIES"}
    assert set(nb04) == {"SEED", "N_TRAIN", "EPOCHS", "FGSM_RS_EPOCHS", "PGD_EPOCHS"} | sweep | (
        evaluation
    )
    assert nb02["EPOCHS"] is None and nb04["PGD_EPOCHS"] is None and nb04["N_TEST"] is None


def test_series_lists_every_notebook_in_order():
    assert [p.name for p in PATHS] == list(NOTEBOOKS)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_exactly_one_parameters_cell_first(path):
    """Without the tag papermill ignores CI overrides and silently runs at full size."""
    cells = code_cells(load(path))
    tagged = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: {len(tagged)} cells tagged 'parameters'"
    assert cells[0] is tagged[0], "the parameters cell must be the first code cell"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
@pytest.mark.parametrize(
    ("size", "overrides"), [("CI", CI_PARAMETERS), ("classroom", CLASSROOM_PARAMETERS)]
)
def test_size_overrides_exist_in_the_parameters_cell(path, size, overrides):
    defined = set(parameter_names(path))
    assert "SEED" in defined
    missing = set(overrides[path.name]) - defined
    assert not missing, f"{path.name}: {size} overrides {missing} are not parameters"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_classroom_size_lies_between_ci_and_full(path):
    """Each classroom number is at least the CI one (where CI sets it) and at most the
    notebook's own (None: all, the most): a class runs smaller than the course, not than CI."""
    course = notebook_parameters(path)
    for name, value in CLASSROOM_PARAMETERS[path.name].items():
        ci = CI_PARAMETERS[path.name].get(name)
        if isinstance(value, int | float):
            assert ci is None or ci <= value, (path.name, name, ci, value)
            assert course[name] is None or value <= course[name], (path.name, name, value)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_papermill_reads_every_parameter(path):
    """papermill skips a line it cannot parse (e.g. a second '=' in the comment) and then
    warns "Passed unknown parameter" for the override: keep the cell in its simple form."""
    import papermill

    defined = parameter_names(path)
    found = [p["name"] for p in papermill.inspect_notebook(str(path)).values()]
    assert found == defined, f"{path.name}: papermill sees {found}, the cell defines {defined}"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_setup_cell_follows_parameters(path):
    """After the parameters cell and the Colab cell (which does nothing elsewhere; see
    tests/test_launch.py), the setup cell."""
    after = code_cells(load(path))[1:]
    if after and '"google.colab" in sys.modules' in "".join(after[0]["source"]):
        after = after[1:]
    setup = "".join(after[0]["source"])
    for needed in ("%load_ext autoreload", "%autoreload 2", "set_seed(SEED)"):
        assert needed in setup, f"{path.name}: setup cell lacks {needed!r}"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    for cell in code_cells(load(path)):
        assert cell["outputs"] == [] and cell["execution_count"] is None, (
            f"{path.name} has outputs: run `make strip`"
        )


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_kernel_and_textbook_shape(path):
    nb = load(path)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    markdown = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    for heading in ("**What you will learn**", "## Summary", "## Exercises"):
        assert heading in markdown, f"{path.name} lacks {heading!r}"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_series_navigation_links_every_other_notebook(path):
    """The "Series:" line under each title links every other notebook, in order."""
    first = "".join(load(path)["cells"][0]["source"])
    assert "*Series:*" in first, f"{path.name}: no series navigation in the first cell"
    nav = first[first.index("*Series:*") :]
    others = [name for name in NOTEBOOKS if name != path.name]
    positions = [nav.find(f"({name})") for name in others]
    assert -1 not in positions, f"{path.name}: the series line lacks a link to {others}"
    assert positions == sorted(positions), f"{path.name}: the series line is out of order"
    assert f"({path.name})" not in nav, f"{path.name} links to itself"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_exercises_numbered_in_order_with_matching_grade_ids(path):
    """Exercise N.1, N.2, ... appear in that order; each graded cell's id starts with its
    exercise's ``exN_k_``; the exercises list says how many are graded above it."""
    nb, chapter = load(path), int(path.name[:2])
    numbers, current = [], None
    for cell in nb["cells"]:
        text = "".join(cell["source"])
        match = re.match(rf"### Exercise {chapter}\.(\d+) ", text)
        if match:
            current = int(match.group(1))
            numbers.append(current)
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if grade_id and not grade_id.startswith("cell-"):
            assert grade_id.startswith(f"ex{chapter}_{current}_"), (
                f"{path.name}: {grade_id} sits under Exercise {chapter}.{current}"
            )
    assert numbers == list(range(1, len(numbers) + 1)), f"{path.name}: exercises {numbers}"
    if numbers:
        markdown = " ".join("".join("".join(c["source"]) for c in nb["cells"]).split())
        word = "and" if len(numbers) == 2 else "to"
        assert f"Exercises {chapter}.1 {word} {chapter}.{len(numbers)} above" in markdown, (
            f"{path.name}: the exercises section does not count {len(numbers)} graded ones"
        )


LIBRARY = sorted((PROJECT_ROOT / "helpers").glob("*.py"))


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: p.name)
def test_the_course_library_never_imports_the_tooling(path):
    """One direction of imports: tooling and benchmarks import helpers, never the reverse,
    so the student kit (helpers alone) runs without them."""
    wrong = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        wrong += [
            f"helpers/{path.name}:{node.lineno} imports {name}"
            for name in names
            if name.split(".")[0] in ("tooling", "benchmarks")
        ]
    assert not wrong, "; ".join(wrong)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.name)
def test_notebooks_import_the_course_library_not_the_tooling(path):
    wrong = [
        line.strip()
        for cell in code_cells(load(path))
        for line in "".join(cell["source"]).splitlines()
        if line.split()[:2]
        and line.split()[0] in ("import", "from")
        and line.split()[1].split(".")[0] in ("tooling", "benchmarks")
    ]
    assert not wrong, f"{path.name}: {wrong}"
