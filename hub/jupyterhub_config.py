"""JupyterHub for a class of the course: one hub, a JupyterLab per user, nbgrader's exchange.

Run it with ``make hub`` (in the foreground, on http://127.0.0.1:8000), or
``.venv/bin/jupyterhub -f hub/jupyterhub_config.py``. The teacher's guide
(``notebooks/README.md``, "A JupyterHub for a class") says how it maps onto The Littlest
JupyterHub and Zero to JupyterHub; ``tests/test_hub.py`` (``make hub-test``) runs a class
through it end to end.

What this configuration chooses, and why:

- **Spawner**: ``SimpleLocalProcessSpawner``. Every user's server is a local process of
  the hub's own Unix user, with its own home folder ``<state>/home/<user>``; no system
  users are created, so it runs as root in CI and as you on a laptop. It gives **no
  isolation between users** (each could read the others' files): a real class needs one
  Unix user or container per student (LocalProcessSpawner with system users, TLJH's
  SystemdSpawner, or KubeSpawner).
- **Authenticator**: JupyterHub's ``SharedPasswordAuthenticator``: the listed students log
  in with one shared password, the instructors (hub admins) with a second, longer one.
  Anyone with the student password can log in as any student, so for a real class use
  per-user accounts instead (NativeAuthenticator, OAuth through your school's login with
  OAuthenticator, or LDAP).
- **Environment**: every server runs JupyterLab from the Python environment that runs the
  hub (the course's ``.venv``), so the course library ``helpers``, the ipywidgets explorer
  and nbgrader's extensions are there.
- **nbgrader**: a shared exchange folder ``<state>/exchange`` (``c.Exchange.root``) for
  the course id ``tooling.classroom.COURSE_ID``; instructors see the Formgrader, students
  only the Assignments tab (``hub/jupyter/<role>/``).

Settings (environment variables, all optional):

- ``MNIST_AD_HUB_DIR``: the hub's state: database, cookie secret, homes, exchange
  (default ``build/hub``, git-ignored);
- ``MNIST_AD_HUB_STUDENTS`` / ``MNIST_AD_HUB_INSTRUCTORS``: comma-separated user names
  (default ``ada,bob`` / ``teacher``);
- ``MNIST_AD_HUB_PASSWORD`` (8+ characters) / ``MNIST_AD_HUB_ADMIN_PASSWORD`` (32+): the
  students' and the instructors' passwords; unset, random ones are generated and written
  to ``<state>/passwords.txt`` (readable by you only).

Any option can also be given on the command line, e.g.
``--JupyterHub.bind_url=http://127.0.0.1:8001``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from pathlib import Path

from tooling.classroom import COURSE_ID

c = get_config()  # noqa: F821

HUB_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = HUB_DIR.parent
#: Debian's node-configurable-http-proxy keeps its modules here, where a Node.js that is
#: not Debian's own (e.g. NodeSource's) does not look unless NODE_PATH says so.
DEBIAN_NODE_MODULES = Path("/usr/share/nodejs")


def state_dir() -> Path:
    """The hub's writable folder (``$MNIST_AD_HUB_DIR``, default ``build/hub``)."""
    folder = Path(os.environ.get("MNIST_AD_HUB_DIR") or PROJECT_ROOT / "build" / "hub")
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def user_names(variable: str, default: str) -> list[str]:
    """The comma-separated user names in ``$variable`` (or ``default``)."""
    return [name.strip() for name in os.environ.get(variable, default).split(",") if name.strip()]


def passwords(state: Path) -> tuple[str, str]:
    """(students' password, instructors' password): from the environment, else random
    ones, generated once and kept in ``<state>/passwords.txt`` (mode 600)."""
    student = os.environ.get("MNIST_AD_HUB_PASSWORD")
    instructor = os.environ.get("MNIST_AD_HUB_ADMIN_PASSWORD")
    if student and instructor:
        return student, instructor
    saved = state / "passwords.txt"
    if saved.exists():
        kept = dict(line.split("=", 1) for line in saved.read_text().splitlines() if "=" in line)
    else:
        kept = {"student": secrets.token_urlsafe(12), "instructor": secrets.token_urlsafe(32)}
        saved.touch(mode=0o600)
        saved.write_text("".join(f"{role}={word}\n" for role, word in kept.items()))
    print(f"hub passwords (students, instructors): see {saved}", file=sys.stderr)
    return student or kept["student"], instructor or kept["instructor"]


def exchange_dir(state: Path) -> Path:
    """nbgrader's shared exchange, writable by every user (as /srv/nbgrader/exchange is)."""
    exchange = state / "exchange"
    exchange.mkdir(exist_ok=True)
    exchange.chmod(0o777)
    return exchange


def proxy_command() -> list[str]:
    """configurable-http-proxy, with Debian's module folder on NODE_PATH when the proxy is
    Debian's package."""
    found = shutil.which("configurable-http-proxy")
    if found is None:
        raise SystemExit(
            "configurable-http-proxy not found: apt-get install node-configurable-http-proxy"
        )
    if Path(found).resolve().is_relative_to(DEBIAN_NODE_MODULES):
        paths = [p for p in os.environ.get("NODE_PATH", "").split(os.pathsep) if p]
        os.environ["NODE_PATH"] = os.pathsep.join([*paths, str(DEBIAN_NODE_MODULES)])
    return [found]


STATE = state_dir()
STUDENTS = user_names("MNIST_AD_HUB_STUDENTS", "ada,bob")
INSTRUCTORS = user_names("MNIST_AD_HUB_INSTRUCTORS", "teacher")
STUDENT_PASSWORD, INSTRUCTOR_PASSWORD = passwords(STATE)
EXCHANGE = exchange_dir(STATE)
HOMES = STATE / "home"
HOMES.mkdir(exist_ok=True)
BIN = Path(sys.executable).parent  # the course environment's scripts (jupyter, nbgrader)


def role(spawner) -> str:
    """``instructor`` or ``student``: which of ``hub/jupyter/``'s configurations a user's
    server reads."""
    return "instructor" if spawner.user.name in INSTRUCTORS else "student"


# --- The hub and its proxy, on loopback ------------------------------------------------------
c.JupyterHub.bind_url = "http://127.0.0.1:8000"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = 8081
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.command = proxy_command()
c.ConfigurableHTTPProxy.pid_file = str(STATE / "jupyterhub-proxy.pid")

# --- Who may log in ----------------------------------------------------------------------------
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = STUDENT_PASSWORD
c.SharedPasswordAuthenticator.admin_password = INSTRUCTOR_PASSWORD
c.Authenticator.allowed_users = set(STUDENTS)
c.Authenticator.admin_users = set(INSTRUCTORS)

# --- Each user's JupyterLab ------------------------------------------------------------------
c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = str(HOMES / "{username}")
c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.args = ["--allow-root"] if os.geteuid() == 0 else []  # CI runs as root
c.Spawner.start_timeout = 120  # a busy 2-core machine takes a while to import JupyterLab
c.Spawner.http_timeout = 120
c.Spawner.environment = {
    "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "/usr/bin:/bin")]),
    "JUPYTER_CONFIG_PATH": lambda spawner: str(HUB_DIR / "jupyter" / role(spawner)),
    "MNIST_AD_ARTIFACTS": lambda spawner: str(HOMES / spawner.user.name / "artifacts"),
    "MNIST_AD_HUB_EXCHANGE": str(EXCHANGE),
    "MNIST_AD_HUB_COURSE": COURSE_ID,
}
