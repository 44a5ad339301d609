"""Where the course keeps its files, anchored on this package's own location.

Every path works wherever a kernel or script starts, because it is derived from
``helpers/`` itself, never from the current working directory.

Environment variables (all optional):

- ``MNIST_NPZ``: another location of ``mnist.npz`` (default ``data/mnist.npz``).
- ``MNIST_AD_ARTIFACTS``: where trained models and metrics go (default ``artifacts/``).
  The test suite points it at a scratch folder so CI-size runs never overwrite the
  models of a full-size run.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

PROJECT_ROOT: Path = Path(__file__).resolve().parent.parent
DATA_DIR: Path = PROJECT_ROOT / "data"
NOTEBOOKS_DIR: Path = PROJECT_ROOT / "notebooks"
RESULTS_DIR: Path = PROJECT_ROOT / "results"


def mnist_path() -> Path:
    """The MNIST file to load: ``$MNIST_NPZ`` if set, else ``data/mnist.npz``."""
    override = os.environ.get("MNIST_NPZ")
    return Path(override).expanduser() if override else DATA_DIR / "mnist.npz"


def artifacts_dir() -> Path:
    """Folder (git-ignored) for trained models, metrics and figures of a run.

    ``$MNIST_AD_ARTIFACTS`` if set (relative paths are taken from the project root),
    else ``<project>/artifacts``. Read at call time, so tests can redirect it.
    """
    override = os.environ.get("MNIST_AD_ARTIFACTS")
    if not override:
        return PROJECT_ROOT / "artifacts"
    path = Path(override).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


@contextlib.contextmanager
def write_atomically(path: Path) -> Iterator[Path]:
    """Give a temporary path in ``path``'s folder (same suffix) to write to; when the block
    ends without error, move it onto ``path`` in one step (``os.replace``); else delete it.

    The file gets the permissions of any new file (``0o666`` less the umask), not the
    owner-only ones of a temporary file, so a class or a web server can read results."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        if temporary.exists():  # a writer may have replaced it with a file of its own
            os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _umask() -> int:
    """The process's umask (reading it means setting it, so it is set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
