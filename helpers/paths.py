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

import os
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
