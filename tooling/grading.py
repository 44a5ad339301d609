"""``make grade``: autograde a folder of submissions, one student at a time in isolation.

Each student is graded in a scratch copy of the course folder that holds the release, the
gradebook and that student's notebooks only (``<course>/grading/<run>/<n>/``), and each
notebook's kernel runs in the sandbox of :mod:`tooling.sandbox` (no network, read-only
file system, the instructor's folders hidden, an unprivileged user). The grades are read
from the scratch gradebook by this process, which the kernel cannot reach, and only this
process writes ``grades.csv``. So a submission can at most spoil its own grade.

Grading always finishes: a missing, unreadable or symlinked notebook, a notebook that runs
out of time (:data:`NOTEBOOK_TIMEOUT`, besides nbgrader's limit per cell) or one on which
nbgrader fails is recorded for that student, with the reason, and the others are graded.
Folder names are taken literally (``.dave``, ``_carol`` and ``*`` are students like any
other); nbgrader sees each student under the fixed id ``student`` of its scratch copy.
Nothing earlier is deleted: a student's executed notebooks replace the previous ones in
``<course>/autograded/<student>/`` only once the new ones exist, and the grade tables are
written in one step each. ``jobs`` students are graded side by side.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from helpers.paths import PROJECT_ROOT, write_atomically
from tooling import sandbox, written
from tooling.classroom import (
    COURSE_ID,
    course_assignments,
    course_size,
    load_notebook,
    nbgrader_api,
    nbgrader_env,
    parameters_cell,
    save_notebook,
    write_csv,
)

#: Seconds one notebook may take to grade, all its cells together (a cell may take
#: ``classroom.CELL_TIMEOUT``); past it the notebook scores 0 with status "timed out".
NOTEBOOK_TIMEOUT: dict[str, int] = {"full": 3 * 3600, "classroom": 3600, "ci": 900}
#: nbgrader's name for the student in each scratch copy.
SCRATCH_STUDENT = "student"
#: What a student's scratch copy holds of the course folder.
COURSE_FILES = ("classroom.json", "nbgrader_config.py", "gradebook.db", "source", "release")


class Submission(NamedTuple):
    """One student's notebook for one assignment: ``path`` to grade, or ``problem`` saying
    why it cannot be graded (``None`` and ``None``: not handed in)."""

    path: Path | None
    problem: str | None


def find_submission(student_dir: Path, aid: str) -> Submission:
    """The notebook ``aid.ipynb`` in a student's folder, directly or in nbgrader's
    ``<aid>/`` subfolder; a symbolic link or a file that is not a notebook is a problem."""
    notebook = f"{aid}.ipynb"
    for candidate in (student_dir / aid / notebook, student_dir / notebook):
        links = [p for p in (student_dir, candidate.parent, candidate) if p.is_symlink()]
        if links:
            return Submission(None, f"{links[0].name} is a symbolic link, not a notebook file")
        if candidate.is_file():
            try:
                nb = load_notebook(candidate)
                if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
                    raise ValueError("it has no list of cells")
            except (ValueError, UnicodeDecodeError) as err:
                return Submission(None, f"{notebook} is not a readable notebook ({err})")
            return Submission(candidate, None)
    return Submission(None, None)


def students_in(submissions: Path) -> list[Path]:
    """Every folder in ``submissions``, each a student, its name taken literally."""
    if not submissions.is_dir():
        raise FileNotFoundError(f"no folder of submissions at {submissions}")
    return sorted((p for p in submissions.iterdir() if p.is_dir()), key=lambda p: p.name)


def stage_student(student_dir: Path, course_dir: Path, scratch: Path) -> dict[str, Submission]:
    """Make ``scratch/course``: the course's release and gradebook, and this student's
    notebooks under nbgrader's ``submitted/student/<aid>/``, each parameters cell reset to
    the released one. Returns every assignment's :class:`Submission`."""
    course = scratch / "course"
    for name in COURSE_FILES:
        source = course_dir / name
        if source.is_dir():
            shutil.copytree(source, course / name)
        elif source.exists():
            course.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, course / name)
    found = {}
    for aid in course_assignments(course_dir):
        found[aid] = submission = find_submission(student_dir, aid)
        if submission.path is None:
            continue
        nb = load_notebook(submission.path)
        released = parameters_cell(load_notebook(course_dir / "source" / aid / f"{aid}.ipynb"))
        own = parameters_cell(nb)
        if own is not None and released is not None:
            own["source"] = released["source"]
        save_notebook(nb, course / "submitted" / SCRATCH_STUDENT / aid / f"{aid}.ipynb")
        stamp = submission.path.parent / "timestamp.txt"
        if submission.path.parent.name == aid and stamp.is_file() and not stamp.is_symlink():
            shutil.copy(stamp, course / "submitted" / SCRATCH_STUDENT / aid / "timestamp.txt")
    return found


def kernel_environment(scratch: Path) -> dict[str, str]:
    """The only variables the student's kernel sees (nothing of the grader's own)."""
    work = scratch / "work"
    env = {
        "HOME": str(work / "home"),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"]),
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "MNIST_AD_ARTIFACTS": str(work / "artifacts"),
    }
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def prepare_sandbox(scratch: Path, course_dir: Path, submissions: Path) -> Path:
    """Write the sandbox kernel spec for one student (``scratch/jupyter``, out of the
    kernel's reach) and its writable folder ``scratch/work``; returns the spec's folder."""
    work = scratch / "work"
    for folder in (work, work / "home", work / "artifacts"):
        sandbox.make_writable_by_sandbox(folder)
    hidden = [course_dir, submissions, PROJECT_ROOT, Path.home()]  # scratch is in course_dir
    readable = [
        *sandbox.python_roots(),
        PROJECT_ROOT / "helpers",
        PROJECT_ROOT / "data",
        scratch / "course" / "autograded" / SCRATCH_STUDENT,  # the notebook being run
    ]
    sandbox.write_kernelspec(
        scratch / "jupyter",
        hidden=hidden,
        readable=readable,
        writable=[work, scratch / "runtime"],  # runtime: connection files, the kernel's sockets
        env=kernel_environment(scratch),
    )
    return scratch / "jupyter"


def autograde_one(course: Path, aid: str, isolated: bool) -> int:
    """``nbgrader autograde`` of one assignment of the scratch copy ``course`` (run in its
    own process by :func:`grade_student`); the kernel in the sandbox if ``isolated``."""
    kernel = sandbox.KERNEL_NAME if isolated else None
    sockets = Path(os.environ["JUPYTER_RUNTIME_DIR"]) / "kernel"  # ipc sockets: kernel-<port>
    api = nbgrader_api(course, course_size(course), kernel=kernel, sockets=sockets)
    result = api.autograde(aid, SCRATCH_STUDENT, force=True, create=True)
    if not result["success"]:
        print(result.get("log", ""), result.get("error", ""), file=sys.stderr)
    return 0 if result["success"] else 1


def _run_limited(command: list[str], env: Mapping[str, str], timeout: int) -> tuple[str, str]:
    """Run ``command`` in its own process group; ``("ok" | "failed" | "timed out", log)``."""
    with subprocess.Popen(
        command,
        env=dict(env),
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            log, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            log, _ = process.communicate()
            return "timed out", log
    return ("ok" if process.returncode == 0 else "failed"), log


def read_scores(course: Path, aid: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The scratch gradebook's score of the student for ``aid`` (``None`` if absent) and its
    graded cells."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gb:
        try:
            sub = gb.find_submission(aid, SCRATCH_STUDENT)
        except MissingEntry:
            return None, []
        status = "needs manual grading" if sub.needs_manual_grade else "graded"
        cells = [
            {"exercise": g.name, "score": g.score, "max_score": g.max_score}
            for nb in sub.notebooks
            for g in sorted(nb.grades, key=lambda g: g.name)
        ]
        return {"score": sub.score, "max_score": sub.max_score, "status": status}, cells


def max_scores(course_dir: Path) -> dict[str, float]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}", COURSE_ID) as gb:
        return {aid: gb.find_assignment(aid).max_score for aid in course_assignments(course_dir)}


def grade_student(
    student_dir: Path,
    course_dir: Path,
    scratch: Path,
    submissions: Path,
    isolated: bool,
    most: Mapping[str, float],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Grade every assignment of one student in ``scratch``; returns its grade rows and
    graded cells (see :func:`grade`)."""
    student = student_dir.name
    found = stage_student(student_dir, course_dir, scratch)
    env = nbgrader_env(scratch / "course")
    env["MNIST_AD_ARTIFACTS"] = kernel_environment(scratch)["MNIST_AD_ARTIFACTS"]
    if isolated:
        env["JUPYTER_PATH"] = str(prepare_sandbox(scratch, course_dir, submissions))
    size = course_size(course_dir)
    rows, cells = [], []
    for aid, submission in found.items():
        row = {"student": student, "assignment": aid, "score": 0.0, "max_score": most[aid]}
        if submission.path is None:
            status = f"not graded: {submission.problem}" if submission.problem else "missing"
            rows.append({**row, "status": status})
            continue
        runtime = scratch / "runtime"
        shutil.rmtree(runtime, ignore_errors=True)
        runtime.mkdir()
        runtime.chmod(0o1777)  # the kernel may add its sockets, not touch the grader's files
        env["JUPYTER_RUNTIME_DIR"] = env["TMPDIR"] = str(runtime)  # connection files go here
        command = [sys.executable, "-m", "tooling.grading", str(scratch / "course"), aid]
        command += ["--isolated"] if isolated else []
        started = time.perf_counter()
        outcome, log = _run_limited(command, env, NOTEBOOK_TIMEOUT[size])
        seconds = time.perf_counter() - started
        (scratch / f"{aid}.log").write_text(log)
        scores, graded_cells = read_scores(scratch / "course", aid)
        if outcome == "timed out":
            rows.append({**row, "status": f"timed out after {NOTEBOOK_TIMEOUT[size]} s"})
        elif scores is None or outcome == "failed":
            last = (log.strip().splitlines() or ["no output"])[-1][:200]
            rows.append({**row, "status": f"grader failed: {last} (log: {scratch / aid}.log)"})
        else:
            rows.append({**row, **scores})
            cells += [{"student": student, "assignment": aid, **c} for c in graded_cells]
        print(f"graded {student} / {aid}: {rows[-1]['status']} ({seconds:.0f} s)", flush=True)
    keep_autograded(scratch / "course" / "autograded" / SCRATCH_STUDENT, course_dir, student)
    return rows, cells


def keep_autograded(executed: Path, course_dir: Path, student: str) -> None:
    """Put a student's executed notebooks in ``<course>/autograded/<student>/``, replacing
    the previous ones only once the new ones are in place."""
    if not executed.is_dir():
        return
    folder = course_dir / "autograded"
    folder.mkdir(parents=True, exist_ok=True)
    new, old = folder / f".new-{os.getpid()}-{id(executed)}", folder / f".old-{id(executed)}"
    shutil.copytree(executed, new)
    target = folder / student
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


#: The longest path of a Unix socket (Linux: 108 bytes with the closing zero). A kernel's
#: sockets lie in ``<run>/<n>/runtime/``, so the course folder's path must leave room.
SOCKET_PATH_MAX = 107


def new_run_folder(parent: Path) -> Path:
    """A new folder ``parent/<date-time>`` (``-2``, ``-3``... after it when two runs start in
    the same second) for one grading run, readable by this user only, as the kernels'
    connection keys live in it (the sandbox sees it empty)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        run = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            run.mkdir(mode=0o700)
        except FileExistsError:
            continue
        socket = run / "0000" / "runtime" / "kernel-99"  # a kernel's sockets: kernel-<port>
        if len(str(socket)) > SOCKET_PATH_MAX:
            run.rmdir()
            raise ValueError(
                f"the course folder's path is too long for the kernels' sockets ({socket} has "
                f"{len(str(socket))} characters, at most {SOCKET_PATH_MAX}): move the course "
                "to a shorter path"
            )
        return run
    raise FileExistsError(f"{parent} already holds 999 runs started at {stamp}")


def grade(
    submissions: Path,
    course_dir: Path,
    out: Path | None = None,
    *,
    jobs: int = 1,
    isolated: bool = True,
) -> Path:
    """Autograde every student folder in ``submissions`` (see the module docstring) and
    write the grade table ``out`` (default ``<course>/grades.csv``: student, assignment,
    score, max_score, status) and beside it ``<name>_by_exercise.csv`` (one row per graded
    cell) and ``<name>_written.csv`` (the written answers to grade by hand,
    :mod:`tooling.written`). ``isolated=False`` runs the kernels without the sandbox
    (trusted submissions only). Returns ``out``."""
    course_dir, submissions = Path(course_dir).resolve(), Path(submissions).resolve()
    course_size(course_dir)  # raises if there is no release
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    if isolated:
        ok, reason = sandbox.is_available()
        if not ok:
            raise RuntimeError(reason)
    else:
        print("warning: grading WITHOUT the sandbox: each submission runs with your rights")
    students = students_in(submissions)
    if not students:
        raise FileNotFoundError(f"{submissions} holds no student folders")
    run = new_run_folder(course_dir / "grading")
    most = max_scores(course_dir)
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        futures = [
            pool.submit(grade_student, s, course_dir, run / f"{i:04d}", submissions, isolated, most)
            for i, s in enumerate(students)
        ]
        results = [f.result() for f in futures]
    rows = [r for student_rows, _ in results for r in student_rows]
    cells = [c for _, student_cells in results for c in student_cells]
    out = Path(out) if out is not None else course_dir / "grades.csv"
    for table, path in ((rows, out), (cells, out.with_name(f"{out.stem}_by_exercise.csv"))):
        with write_atomically(path) as scratch:
            write_csv(table, scratch)
    autograded = course_dir / "autograded"
    notebooks = {
        (r["student"], r["assignment"]): autograded / r["student"] / r["assignment"] for r in rows
    }
    notebooks = {
        k: d / f"{k[1]}.ipynb" for k, d in notebooks.items() if (d / f"{k[1]}.ipynb").is_file()
    }
    answers = written.answer_rows(rows, notebooks)
    written.write_answers(answers, out.with_name(f"{out.stem}_written.csv"))
    print(f"graded {len(students)} students: {out} (scratch copies and logs in {run})")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m tooling.grading COURSE AID [--isolated]``: one notebook, for
    :func:`grade_student` (in its own process, so that its time can be limited)."""
    args = sys.argv[1:] if argv is None else argv
    course, aid = Path(args[0]), args[1]
    return autograde_one(course, aid, isolated="--isolated" in args[2:])


if __name__ == "__main__":
    sys.exit(main())
