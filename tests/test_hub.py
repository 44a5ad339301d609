"""A class on the course's JupyterHub, end to end on loopback (``make hub-test``, ~1 min).

Starts JupyterHub with ``hub/jupyterhub_config.py`` on 127.0.0.1 (free ports, state in
``build/hub-test/``, never in your home) for two students, ``ada`` and ``bob``, and one
instructor, ``teacher``, with passwords generated for the run. Then one homework round:

1. every user **logs in** with the hub's login form (the shared-password authenticator;
   the instructor with the admin password), asks the hub's REST API for an API token and
   **starts their own JupyterLab** through it;
2. the instructor builds the course folder ``~/course`` at CI size with
   ``python -m tooling.classroom assignments`` (as in a terminal of their server; run here
   as a process with the instructor's ``HOME``: the one step not through the hub) and
   **releases** notebook 01 with the Formgrader of their server (nbgrader's
   ``formgrader/api/assignment/<id>/release``) into the shared exchange;
3. each student **fetches** it from the Assignments tab of their own server (nbgrader's
   ``assignments/fetch`` endpoint); ``ada`` fills in every solution cell with the
   instructor's solution and saves the notebook through her server's contents API, as
   JupyterLab does; ``bob`` changes nothing; both **submit** (``assignments/submit``);
4. the instructor **collects** and **autogrades** both submissions with the Formgrader
   (``nbgrader collect`` and ``nbgrader autograde`` inside the instructor's server) and
   reads the grade table (``formgrader/api/submissions/<id>``): full marks for ada, zero
   for bob.

Every request goes through the hub's proxy (configurable-http-proxy) to the hub or to
that user's server, authenticated with that user's token; nbgrader's exchange is the only
channel between the users' servers. The Formgrader's autograde runs the kernels with the
instructor's rights, without the sandbox of ``make grade`` (the submissions here are
trusted; the teacher's guide says when to prefer ``make grade``).

A headless Chromium then logs in as ``bob`` and opens the Assignment List of his JupyterLab
(screenshot: ``build/hub-test/student_view.png``). Also checked: every server runs the
course's Python environment (its kernel, the
ipywidgets extension, the ``helpers`` of this checkout), and students get no Formgrader.
Needs Debian's ``node-configurable-http-proxy``; without it the test is skipped, except
under CI (``CI=true``), where that is a failure. Every process started is stopped at the
end, also on failure.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests
from conftest import chromium_path, free_port, skip_or_fail

from helpers.paths import NOTEBOOKS_DIR, PROJECT_ROOT
from tooling import classroom

pytestmark = pytest.mark.hub
HUB_CONFIG = PROJECT_ROOT / "hub" / "jupyterhub_config.py"
STATE = PROJECT_ROOT / "build" / "hub-test"
NOTEBOOK = "01_data_and_preprocessing.ipynb"
AID = classroom.assignment_id(NOTEBOOK)
SOLVER, UNCHANGED, INSTRUCTOR = "ada", "bob", "teacher"
STUDENTS = (SOLVER, UNCHANGED)
START_TIMEOUT = 180  # seconds for the hub, or a user's server, to answer
REQUEST_TIMEOUT = 600  # the Formgrader's autograde answers once the notebook has run
CHROMIUM = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def _require(available: bool, reason: str) -> None:
    """Skip the test when something it needs is missing; under CI, fail instead."""
    if not available:
        skip_or_fail(reason, "hub test")


@dataclass
class Hub:
    """A running hub: its public address and its users' passwords."""

    url: str
    state: Path
    passwords: dict[str, str]
    process: subprocess.Popen
    tokens: dict[str, str] = field(default_factory=dict)

    def home(self, user: str) -> Path:
        return self.state / "home" / user

    def log(self) -> str:
        return (self.state / "hub.log").read_text(errors="replace")[-6000:]


def _wait_for(url: str, process: subprocess.Popen, timeout: float) -> None:
    """Poll ``url`` until it answers 200, or fail when ``process`` exits or time is up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the hub exited with code {process.returncode}")
        try:
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"no answer from {url} in {timeout} s")


def _started_here(state: Path) -> list[Any]:
    """Every live process of this run: the hub and its proxy carry ``MNIST_AD_HUB_DIR``,
    the users' servers and their kernels ``MNIST_AD_HUB_EXCHANGE``, both inside ``state``."""
    found = []
    for process in psutil.process_iter():
        try:
            env = process.environ()
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        marks = (env.get("MNIST_AD_HUB_DIR", ""), env.get("MNIST_AD_HUB_EXCHANGE", ""))
        if any(mark and Path(mark).is_relative_to(state) for mark in marks):
            found.append(process)
    return found


def _stop(process: subprocess.Popen, state: Path) -> None:
    """Stop the hub (it stops the users' servers and the proxy), then kill, by id, any
    process of this run still alive (e.g. after the hub crashed)."""
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    _, alive = psutil.wait_procs(_started_here(state), timeout=10)
    for leftover in alive:
        leftover.kill()


@pytest.fixture(scope="module")
def hub() -> Iterator[Hub]:
    """JupyterHub with ``hub/jupyterhub_config.py`` on 127.0.0.1, state in build/hub-test/."""
    _require(
        shutil.which("configurable-http-proxy") is not None,
        "configurable-http-proxy is not installed (apt-get install node-configurable-http-proxy)",
    )
    try:
        import jupyterhub  # noqa: F401
    except ImportError:
        _require(False, "jupyterhub is not installed (pip install -r requirements-dev.txt)")
    shutil.rmtree(STATE, ignore_errors=True)
    STATE.mkdir(parents=True)
    passwords = {user: secrets.token_urlsafe(12) for user in STUDENTS}
    passwords[SOLVER] = passwords[UNCHANGED]  # one shared student password
    passwords[INSTRUCTOR] = secrets.token_urlsafe(32)  # 43 characters; 32 are required
    env = {
        **os.environ,
        "MNIST_AD_HUB_DIR": str(STATE),
        "MNIST_AD_HUB_STUDENTS": ",".join(STUDENTS),
        "MNIST_AD_HUB_INSTRUCTORS": INSTRUCTOR,
        "MNIST_AD_HUB_PASSWORD": passwords[SOLVER],
        "MNIST_AD_HUB_ADMIN_PASSWORD": passwords[INSTRUCTOR],
    }
    port = free_port()
    command = [
        *(sys.executable, "-m", "jupyterhub", "-f", str(HUB_CONFIG)),
        f"--JupyterHub.bind_url=http://127.0.0.1:{port}",
        f"--JupyterHub.hub_port={free_port()}",
        f"--ConfigurableHTTPProxy.api_url=http://127.0.0.1:{free_port()}",
    ]
    with open(STATE / "hub.log", "w") as log:
        process = subprocess.Popen(
            command, cwd=STATE, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    running = Hub(f"http://127.0.0.1:{port}", STATE, passwords, process)
    try:
        _wait_for(f"{running.url}/hub/api/", process, START_TIMEOUT)
        yield running
    except Exception as err:
        pytest.fail(f"{err}\n--- hub log ---\n{running.log()}")
    finally:
        _stop(process, STATE)


# ------------------------------------------------------------------------- through the hub


def _log_in(hub: Hub, user: str) -> str:
    """Log in with the hub's form, as a browser does, and return a new API token of that
    user (asked for with the login cookie)."""
    with requests.Session() as browser:
        browser.get(f"{hub.url}/hub/login", timeout=30).raise_for_status()
        xsrf = browser.cookies.get("_xsrf")
        form = {"username": user, "password": hub.passwords[user], "_xsrf": xsrf}
        answer = browser.post(f"{hub.url}/hub/login", data=form, allow_redirects=False, timeout=30)
        assert answer.status_code == 302, f"{user} could not log in: {answer.status_code}"
        xsrf = browser.cookies.get("_xsrf")  # a new one, bound to the login
        answer = browser.post(
            f"{hub.url}/hub/api/users/{user}/tokens",
            json={"note": "tests/test_hub.py", "expires_in": 3600},
            headers={"X-XSRFToken": xsrf, "Referer": f"{hub.url}/hub/"},
            timeout=30,
        )
        answer.raise_for_status()
        return answer.json()["token"]


def _call(hub: Hub, user: str, method: str, path: str, **kwargs: Any) -> Any:
    """One request of ``user`` (with their token) to ``/hub/api/...`` or ``/user/...``;
    returns the decoded JSON answer (``None`` if empty)."""
    answer = requests.request(
        method,
        f"{hub.url}{path}",
        headers={"Authorization": f"token {hub.tokens[user]}"},
        timeout=REQUEST_TIMEOUT,
        **kwargs,
    )
    assert answer.ok, f"{method} {path} as {user}: {answer.status_code} {answer.text[:2000]}"
    return answer.json() if answer.content else None


def _server(user: str, path: str = "") -> str:
    """The path of ``path`` on ``user``'s own server, behind the hub's proxy."""
    return f"/user/{user}/{path}"


def _start_server(hub: Hub, user: str) -> None:
    """Ask the hub to start ``user``'s server, then wait until the hub says it is ready."""
    _call(hub, user, "POST", f"/hub/api/users/{user}/server")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if _call(hub, user, "GET", f"/hub/api/users/{user}")["servers"].get("", {}).get("ready"):
            return
        time.sleep(0.5)
    raise TimeoutError(f"the server of {user} was not ready after {START_TIMEOUT} s")


def _assignments(hub: Hub, student: str) -> list[dict[str, Any]]:
    """The Assignments tab of ``student``: what nbgrader lists for the course."""
    answer = _call(
        hub, student, "GET", _server(student, "assignments"),
        params={"course_id": classroom.COURSE_ID},
    )  # fmt: skip
    assert answer["success"], answer
    return [a for a in answer["value"] if a["assignment_id"] == AID]


def _student_action(hub: Hub, student: str, action: str) -> list[dict[str, Any]]:
    """Press *Fetch* or *Submit* in the Assignments tab; returns the new listing."""
    answer = _call(
        hub, student, "POST", _server(student, f"assignments/{action}"),
        data={"assignment_id": AID, "course_id": classroom.COURSE_ID},
    )  # fmt: skip
    assert answer["success"], answer
    return [a for a in answer["value"] if a["assignment_id"] == AID]


def _formgrader(hub: Hub, path: str) -> Any:
    """A POST to the Formgrader's API on the instructor's server; checks its success."""
    answer = _call(hub, INSTRUCTOR, "POST", _server(INSTRUCTOR, f"formgrader/api/{path}"))
    assert answer["success"], answer.get("error") or answer
    return answer


def _solve(hub: Hub, student: str) -> None:
    """Open the fetched notebook, write the instructor's solution into every solution
    cell, and save it, all through ``student``'s contents API (as JupyterLab does)."""
    path = _server(student, f"api/contents/{AID}/{NOTEBOOK}")
    notebook = _call(hub, student, "GET", path, params={"content": 1})["content"]
    course = classroom.load_notebook(NOTEBOOKS_DIR / NOTEBOOK)
    solutions = {
        classroom.nbgrader_metadata(cell)["grade_id"]: cell["source"]
        for cell in course["cells"]
        if classroom.is_solution_cell(cell)
    }
    filled = 0
    for cell in notebook["cells"]:
        if classroom.is_solution_cell(cell):
            cell["source"] = solutions[classroom.nbgrader_metadata(cell)["grade_id"]]
            filled += 1
    assert filled == len(solutions) > 0
    saved = {"type": "notebook", "format": "json", "content": notebook}
    _call(hub, student, "PUT", path, json=saved)


def _build_course(hub: Hub) -> Path:
    """``python -m tooling.classroom assignments --size ci --course-dir ~/course`` with the
    instructor's home, as the instructor types it in a terminal of their server."""
    home = hub.home(INSTRUCTOR)
    home.mkdir(parents=True, exist_ok=True)
    course = home / "course"
    env = {**os.environ, "HOME": str(home), "MNIST_AD_ARTIFACTS": str(home / "artifacts")}
    built = subprocess.run(
        [
            *(sys.executable, "-m", "tooling.classroom", "assignments"),
            *("--size", "ci", "--course-dir", str(course)),
        ],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return course


@pytest.fixture(scope="module")
def homework(hub: Hub) -> dict[str, Any]:
    """One homework round through the hub (see the module docstring); what each step saw."""
    seen: dict[str, Any] = {"started": time.monotonic()}
    try:
        for user in (*STUDENTS, INSTRUCTOR):
            hub.tokens[user] = _log_in(hub, user)
        with ThreadPoolExecutor(max_workers=3) as pool:
            students = [pool.submit(_start_server, hub, s) for s in STUDENTS]
            seen["course"] = _build_course(hub)
            _start_server(hub, INSTRUCTOR)  # its Formgrader reads ~/course as it starts
            for started in students:
                started.result()
        seen["servers_ready"] = time.monotonic() - seen["started"]
        seen["release"] = _formgrader(hub, f"assignment/{AID}/release")
        seen["released"] = {s: _assignments(hub, s) for s in STUDENTS}
        seen["fetched"] = {s: _student_action(hub, s, "fetch") for s in STUDENTS}
        _solve(hub, SOLVER)
        seen["submitted"] = {s: _student_action(hub, s, "submit") for s in STUDENTS}
        seen["inbound"] = sorted(
            p.name.split("+")[0]
            for p in (hub.state / "exchange" / classroom.COURSE_ID / "inbound").iterdir()
        )
        seen["collect"] = _formgrader(hub, f"assignment/{AID}/collect")
        graded = time.monotonic()
        for student in STUDENTS:
            _formgrader(hub, f"submission/{AID}/{student}/autograde")
        seen["autograde_seconds"] = time.monotonic() - graded
        seen["grades"] = _call(
            hub, INSTRUCTOR, "GET", _server(INSTRUCTOR, f"formgrader/api/submissions/{AID}")
        )
        seen["kernelspecs"] = {
            u: _call(hub, u, "GET", _server(u, "api/kernelspecs")) for u in (SOLVER, INSTRUCTOR)
        }
        seen["page_config"] = {u: _lab_page_config(hub, u) for u in (SOLVER, INSTRUCTOR)}
        seen["student_formgrader"] = _student_formgrader_status(hub)
        seen["rss_mib"] = _memory_by_process(hub)
    except Exception as err:
        pytest.fail(f"{type(err).__name__}: {err}\n--- hub log ---\n{hub.log()}")
    seen["seconds"] = time.monotonic() - seen["started"]
    ready, grading = seen["servers_ready"], seen["autograde_seconds"]
    print(f"hub round trip: {seen['seconds']:.0f} s (servers ready after {ready:.0f} s, "
          f"autograding {grading:.0f} s); memory (RSS, MiB): {seen['rss_mib']}")  # fmt: skip
    return seen


def _memory_by_process(hub: Hub) -> dict[str, float]:
    """Resident memory (MiB) of the hub, its proxy and each user's server, now."""
    hub_process = psutil.Process(hub.process.pid)
    memory = {"hub": hub_process.memory_info().rss / 2**20}
    for child in hub_process.children(recursive=True):
        command = " ".join(child.cmdline())
        if "configurable-http-proxy" in command:
            memory["proxy"] = child.memory_info().rss / 2**20
        elif "jupyterhub.singleuser" in command:
            user = child.environ().get("JUPYTERHUB_USER", str(child.pid))
            memory[f"server {user}"] = child.memory_info().rss / 2**20
    return {name: round(mib) for name, mib in memory.items()}


def _lab_page_config(hub: Hub, user: str) -> dict[str, Any]:
    """The configuration JupyterLab's page on ``user``'s server hands the browser: its
    extensions, and those disabled."""
    answer = requests.get(
        f"{hub.url}{_server(user, 'lab')}",
        headers={"Authorization": f"token {hub.tokens[user]}"},
        timeout=60,
    )
    answer.raise_for_status()
    start = answer.text.index('id="jupyter-config-data"')
    start = answer.text.index(">", start) + 1
    return json.loads(answer.text[start : answer.text.index("</script>", start)])


def _student_formgrader_status(hub: Hub) -> int:
    """The HTTP status of the Formgrader's page on a student's server (404: not there)."""
    answer = requests.get(
        f"{hub.url}{_server(SOLVER, 'formgrader')}",
        headers={"Authorization": f"token {hub.tokens[SOLVER]}"},
        allow_redirects=False,
        timeout=60,
    )
    return answer.status_code


# ------------------------------------------------------------------------------- the tests


def test_the_assignment_goes_out_through_the_exchange(homework):
    assert homework["release"]["success"]
    for student in STUDENTS:
        assert [a["status"] for a in homework["released"][student]] == ["released"]
        fetched = [a for a in homework["fetched"][student] if a["status"] == "fetched"]
        assert len(fetched) == 1, homework["fetched"][student]
        assert [Path(n["path"]).name for n in fetched[0]["notebooks"]] == [NOTEBOOK]


def test_submissions_come_back_named_by_hub_user(homework):
    for student in STUDENTS:
        submitted = [a for a in homework["submitted"][student] if a["status"] == "submitted"]
        assert len(submitted) == 1, homework["submitted"][student]
        assert [s["student_id"] for s in submitted[0]["submissions"]] == [student]
    assert homework["inbound"] == sorted(STUDENTS)
    course = homework["course"]
    for student in STUDENTS:
        assert (course / "submitted" / student / AID / NOTEBOOK).is_file()


def test_autograde_gives_full_marks_and_zero(homework):
    grades = {row["student"]: row for row in homework["grades"]}
    assert set(grades) == set(STUDENTS), grades
    solved, unchanged = grades[SOLVER], grades[UNCHANGED]
    assert solved["autograded"] and unchanged["autograded"]
    assert solved["max_score"] == unchanged["max_score"] == 5.0  # 1.1 (2) + 1.2 (3)
    assert solved["score"] == solved["max_score"], solved
    assert unchanged["score"] == 0.0, unchanged
    assert not solved["needs_manual_grade"]


def test_every_server_runs_the_course_environment(homework):
    for user, specs in homework["kernelspecs"].items():
        spec = specs["kernelspecs"][specs["default"]]["spec"]
        python = Path(spec["argv"][0])
        assert python.name.startswith("python"), spec
        if python.is_absolute():
            assert python.resolve().parent == Path(sys.executable).resolve().parent, (user, spec)
    for user, page in homework["page_config"].items():
        names = {e["name"] for e in page["federated_extensions"]}
        assert {"@jupyter-widgets/jupyterlab-manager", "@jupyter/nbgrader"} <= names, user
    disabled = homework["page_config"][SOLVER]["disabledExtensions"]
    assert "@jupyter/nbgrader:formgrader" in disabled, disabled
    assert "@jupyter/nbgrader:formgrader" not in homework["page_config"][INSTRUCTOR].get(
        "disabledExtensions", []
    )
    assert homework["student_formgrader"] == 404, "a student's server serves the Formgrader"


def test_a_student_sees_the_assignment_in_jupyterlab(hub, homework):
    """The student's view, in headless Chromium: bob logs in with the hub's form, lands in
    his own JupyterLab, opens nbgrader's Assignment List (the Nbgrader menu) and finds
    notebook 01 there, fetched and submitted. The screenshot goes to
    build/hub-test/student_view.png."""
    from playwright.sync_api import expect, sync_playwright

    executable = chromium_path("hub test")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM)
        page = browser.new_page(viewport={"width": 1300, "height": 800})
        try:
            page.goto(f"{hub.url}/hub/login", timeout=60_000)
            page.fill("#username_input", UNCHANGED)
            page.fill("#password_input", hub.passwords[UNCHANGED])
            page.click("#login_submit")
            page.wait_for_url(f"**/user/{UNCHANGED}/lab**", timeout=120_000)
            page.get_by_role("menuitem", name="Nbgrader", exact=True).click(timeout=60_000)
            page.get_by_role("menuitem", name="Assignment List", exact=True).click()
            news = page.get_by_role("button", name="No", exact=True)  # "notified of news?"
            if news.count():
                news.first.click()
            panel = page.locator("#nbgrader-assignment-list")
            expect(panel.get_by_text(AID).first).to_be_visible(timeout=60_000)
            page.wait_for_timeout(1000)  # let the lists finish drawing
            page.screenshot(path=str(STATE / "student_view.png"))
            text = panel.inner_text()
        except Exception:
            page.screenshot(path=str(STATE / "student_view_failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    fetched, submitted = text.split("Downloaded assignments")[1].split("Submitted assignments")
    assert AID in fetched and AID in submitted, text  # in both lists, with its time stamp
