"""TensorFlow's start-up notices are dropped from a run's output, every other line kept."""

import io
import os
import subprocess
import sys

from helpers.paths import PROJECT_ROOT
from tooling import quiet

NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796310800.713341   14070 port.cc:153] oneDNN custom operations are on. You "
    "may see slightly different numerical results due to floating-point round-off errors",
    "I0000 00:00:1796310827.351458   14100 cpu_feature_guard.cc:227] This TensorFlow binary "
    "is optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 FMA, in other "
    "operations, rebuild TensorFlow with the appropriate compiler flags.",
]
KEPT = [
    "W0000 00:00:1796310800.7 14070 op_level_cost_estimator.cc:699] Error in PredictCost()",
    "UserWarning: the model was saved without an optimizer",
    "Traceback (most recent call last):",
    "   06_robustness_evaluation.ipynb done in 17.1 min",
]


def test_only_the_start_up_notices_are_noise():
    assert all(quiet.is_start_up_noise(line) for line in NOISE)
    assert not any(quiet.is_start_up_noise(line) for line in KEPT)


def test_copy_without_noise_keeps_every_other_line_in_order():
    text = "".join(f"{line}\n" for pair in zip(NOISE, KEPT, strict=True) for line in pair)
    read_end, write_end = os.pipe()
    quiet.copy_without_noise(io.BytesIO(text.encode()), write_end)
    os.close(write_end)
    with os.fdopen(read_end) as copied:
        assert copied.read() == "".join(f"{line}\n" for line in KEPT)


def test_quiet_stderr_keeps_a_crash_traceback_and_drops_the_notices():
    code = (
        "import os, sys\n"
        "from tooling.quiet import quiet_stderr\n"
        "quiet_stderr()\n"
        f"os.write(2, {NOISE[0]!r}.encode() + b'\\n')\n"
        "print('kept line', file=sys.stderr)\n"
        "raise RuntimeError('the last thing this process says')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_ROOT, check=False
    )
    assert run.returncode == 1
    assert "kept line" in run.stderr and "absl::InitializeLog" not in run.stderr
    assert run.stderr.rstrip().endswith("RuntimeError: the last thing this process says")


def _executed_outputs(tmp_path, manager) -> str:
    """Run a one-cell notebook that writes like TensorFlow's C++ code (to file descriptor
    2) and like Python (print, a warning), with papermill and ``manager``; its outputs."""
    import nbformat
    import papermill

    cell = (
        "import os, warnings\n"
        f"os.write(2, {NOISE[1]!r}.encode() + b'\\n')\n"
        "print('python output')\n"
        "warnings.warn('a python warning')\n"
    )
    source, executed = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)]), source)
    papermill.execute_notebook(
        str(source), str(executed), kernel_name="python3", progress_bar=False,
        kernel_manager_class=manager,
    )  # fmt: skip
    outputs = nbformat.read(executed, as_version=4).cells[0].outputs
    return "".join(o.get("text", "") for o in outputs)


def test_series_kernels_keep_c_level_notices_out_of_the_notebook(tmp_path, monkeypatch):
    from jupyter_client.manager import AsyncKernelManager

    from tooling.series import LocalKernelManager

    # ipykernel never captures file descriptors under pytest: let the kernel think it is not
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    plain = _executed_outputs(tmp_path, AsyncKernelManager)
    assert "oneDNN custom operations" in plain  # a plain kernel copies it into the notebook
    ours = _executed_outputs(tmp_path, LocalKernelManager)
    assert "oneDNN custom operations" not in ours
    assert "python output" in ours and "a python warning" in ours
