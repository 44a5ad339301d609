"""The sandbox a student's notebook runs in while it is graded (Linux, with bubblewrap).

Grading a notebook means running a student's code, and nbgrader runs it in a Jupyter
kernel with the grader's own rights: it could read the solutions, rewrite the gradebook,
or change another student's submission. Here the kernel is started inside ``bwrap``
(bubblewrap, Debian's package ``bubblewrap``), which gives it:

- the whole file system **read-only**, with the instructor's folders (the course folder with
  its solutions and gradebook, the folder of submissions, the project with its git history,
  the grader's home) replaced by empty ones; the course library, the data and the Python
  environment are mounted back, read-only, because the notebooks import them;
- **write access** only to the folders of this one submission (given as ``writable``);
- **no network** (its own empty network namespace; the kernel talks to the grader over
  Unix sockets in a writable folder), its own process and IPC namespaces, a clean
  environment (nothing of the grader's variables but the few it is given);
- an **unprivileged user**: when the grader runs as root, the kernel runs as ``nobody``
  (uid 65534); otherwise as the grader's own user, still with all of the above.

What the sandbox cannot do: the hidden tests of nbgrader run in the student's kernel (that
is nbgrader's design), so a student's code can see them while they run, and can make its
own test cells pass. What it prevents is everything beyond its own notebook's grade.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

#: The user the kernel runs as when the grader is root (``nobody`` on Debian).
SANDBOX_UID = 65534
KERNEL_NAME = "mnist-ad-sandbox"
INSTALL_HINT = (
    "grading runs each student's code in a sandbox made with bubblewrap: install it "
    "(Debian/Ubuntu: `apt-get install bubblewrap`), or grade without the sandbox with "
    "`make grade SANDBOX=off` (only for submissions you trust: their code then runs with "
    "your rights)"
)


def is_available() -> tuple[bool, str]:
    """Whether a sandbox can be made on this machine: ``(ok, reason if not)``."""
    if shutil.which("bwrap") is None:
        return False, f"bwrap not found; {INSTALL_HINT}"
    probe = subprocess.run(
        sandbox_command(["true"], hidden=[], readable=[], writable=[], env={}),
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return False, f"bwrap cannot make a sandbox here ({probe.stderr.strip()}); {INSTALL_HINT}"
    return True, ""


def _isolation() -> list[str]:
    """bwrap's namespaces: no network, own processes, IPC and host name; as root, no user
    namespace but the capabilities :func:`_drop_privileges` needs to become ``nobody``."""
    own = ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    own += ["--die-with-parent", "--new-session"]
    if os.geteuid() != 0:
        return ["--unshare-user", *own]
    return [*own, "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]


def _drop_privileges() -> list[str]:
    """As root, inside the sandbox: become :data:`SANDBOX_UID` with no capabilities left and
    no way to gain any (no set-uid programs)."""
    if os.geteuid() != 0:
        return []
    return [
        "setpriv", f"--reuid={SANDBOX_UID}", f"--regid={SANDBOX_UID}", "--clear-groups",
        "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--",
    ]  # fmt: skip


def sandbox_command(
    command: Sequence[str],
    *,
    hidden: Sequence[Path],
    readable: Sequence[Path],
    writable: Sequence[Path],
    env: Mapping[str, str],
    drop: bool = True,
) -> list[str]:
    """``command`` wrapped in bwrap: everything read-only, ``hidden`` folders emptied, then
    ``readable`` mounted back read-only and ``writable`` read-write (each at its own path),
    no network, only the variables ``env``. With ``drop=False`` the command itself must
    give up root (:func:`_drop_privileges`) when the grader is root."""
    hidden = sorted({Path(p).resolve() for p in (*hidden, "/tmp")}, key=lambda p: len(p.parts))
    mounted = [Path(p).resolve() for p in (*readable, *writable)]
    args = ["bwrap", *_isolation(), "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for path in hidden:  # an empty folder instead, which the sandbox's user may walk through
        args += ["--perms", "1777" if path == Path("/tmp") else "0755", "--tmpfs", str(path)]
    # The folders between a hidden one and a folder mounted back inside it, walkable too.
    between = {a for m in mounted for a in m.parents if any(h in a.parents for h in hidden)}
    for path in sorted(between, key=lambda p: len(p.parts)):
        args += ["--perms", "0755", "--dir", str(path)]
    for path in mounted:
        kind = "--bind" if path in [Path(p).resolve() for p in writable] else "--ro-bind"
        args += [kind, str(path), str(path)]
    args.append("--clearenv")
    for name, value in env.items():
        args += ["--setenv", name, value]
    return [*args, "--", *(_drop_privileges() if drop else []), *command]


def make_writable_by_sandbox(path: Path) -> None:
    """Create ``path`` and let the sandbox's user write it (as root: hand it to ``nobody``)."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(path, SANDBOX_UID, SANDBOX_UID)


def write_kernelspec(
    jupyter_dir: Path,
    *,
    hidden: Sequence[Path],
    readable: Sequence[Path],
    writable: Sequence[Path],
    env: Mapping[str, str],
) -> str:
    """Write the kernel spec :data:`KERNEL_NAME` (a Python kernel inside the sandbox) into
    ``jupyter_dir/kernels`` (put ``jupyter_dir`` on ``JUPYTER_PATH``); returns its name.
    ``jupyter_dir`` must not be writable by the sandbox (it would rewrite its own jail)."""
    # The connection file (its key signs every message) is readable by the grader only; as
    # root, the sandbox reads it before it gives up root, into a copy its user can read.
    drop = " ".join(_drop_privileges())
    launch = 'umask 022 && cat "$1" > "$1.kernel" && '
    launch += f'exec {drop} "$0" -m ipykernel_launcher -f "$1.kernel"'
    kernel = ["/bin/sh", "-c", launch, sys.executable, "{connection_file}"]
    spec = {
        "argv": sandbox_command(
            kernel, hidden=hidden, readable=readable, writable=writable, env=env, drop=False
        ),
        "display_name": "Python 3 (grading sandbox)",
        "language": "python",
    }
    folder = jupyter_dir / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kernel.json").write_text(json.dumps(spec, indent=1))
    return KERNEL_NAME


def python_roots() -> list[Path]:
    """The folders the kernel's Python needs to read: the environment and its base."""
    return sorted({Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()})
