"""Saving and loading what notebooks hand to each other.

Everything lives under :func:`helpers.paths.artifacts_dir` (git-ignored):

- ``models/<name>.keras`` -- trained models in Keras' native format
- ``metrics/<name>.json`` -- measured numbers (accuracies as fractions 0..1)
- ``figures/<name>.png`` -- figures worth keeping (``make reproduce`` copies them to ``results/``)

Every file is written to a temporary file beside it and then moved into place
(:func:`helpers.paths.write_atomically`), so a run killed mid-save leaves the old file or
the new one, never half of either, and two writers at once cannot interleave.
"""

from __future__ import annotations

import json
import math
import re
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

from helpers.paths import artifacts_dir, write_atomically
from helpers.registry import MODELS

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def _checked_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"artifact names use letters, digits, '_', '-' and '.', got {name!r}")
    return name


def _producer(name: str) -> str:
    """The notebook that makes model ``name`` (for messages)."""
    return MODELS[name].notebook if name in MODELS else "the notebook that trains it"


def model_path(name: str) -> Path:
    """Where model ``name`` is stored: ``<artifacts>/models/<name>.keras``."""
    return artifacts_dir() / "models" / f"{_checked_name(name)}.keras"


def metrics_path(name: str) -> Path:
    """Where metrics ``name`` are stored: ``<artifacts>/metrics/<name>.json``."""
    return artifacts_dir() / "metrics" / f"{_checked_name(name)}.json"


def figure_path(name: str) -> Path:
    """Where figure ``name`` is stored: ``<artifacts>/figures/<name>.png``."""
    return artifacts_dir() / "figures" / f"{_checked_name(name)}.png"


def save_model(model: keras.Model, name: str) -> Path:
    """Save ``model`` as ``<artifacts>/models/<name>.keras`` and return the path."""
    path = model_path(name)
    with write_atomically(path) as temporary:
        model.save(temporary)
    return path


def load_model(name: str) -> keras.Model:
    """Load model ``name``, with a clear error when it is missing or corrupt."""
    path = model_path(name)
    producer = _producer(name)
    if not path.exists():
        raise FileNotFoundError(
            f"no trained model {name!r} at {path}. Run {producer} first "
            "(or `make reproduce` for all of them)."
        )
    try:
        with warnings.catch_warnings():
            # A model trained in bfloat16 is saved as its float32 copy, whose optimizer
            # never took a step: there is no optimizer state to restore, and Keras says so.
            warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
            return keras.saving.load_model(path)
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError) as err:
        raise ValueError(
            f"model file {path} is corrupt or not a Keras model ({type(err).__name__}: "
            f"{err}). Delete it and run {producer} again to rebuild it."
        ) from err


def load_or_train(
    name: str, train: Callable[[], keras.Model], *, made_here: bool = False
) -> keras.Model:
    """Load model ``name`` if it exists; otherwise call ``train()``, save and return it.

    Lets every notebook run on its own: a missing model is rebuilt (usually at a small
    size, with a printed note) instead of failing. A corrupt file still raises.
    ``made_here``: the calling notebook is the one that makes this model (the note then
    just says it is being trained and kept for the next run).
    """
    path = model_path(name)
    if path.exists():
        return load_model(name)
    if made_here:
        print(f"Training model {name!r} (kept in {path.parent} for the next run).")
    else:
        print(
            f"Note: no saved model {name!r} in {path.parent}; training one now. "
            f"For the full-size model run {_producer(name)} first."
        )
    model = train()
    save_model(model, name)
    return model


def _non_finite(value: Any, where: str = "") -> str | None:
    """The key path of the first NaN or infinity in ``value`` (nested dicts and lists)."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "(top level)"
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list | tuple)
        else ()
    )
    for key, item in items:
        found = _non_finite(item, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def save_metrics(name: str, metrics: dict[str, Any]) -> Path:
    """Write ``metrics`` as indented, strict JSON to ``<artifacts>/metrics/<name>.json``.

    Raises ``ValueError`` naming the key of a NaN or infinite value (not JSON, and never a
    number worth reporting)."""
    bad = _non_finite(metrics)
    if bad:
        raise ValueError(f"metrics {name!r}: {bad} is not a finite number; nothing was saved")
    path = metrics_path(name)
    with write_atomically(path) as temporary:
        temporary.write_text(json.dumps(metrics, indent=2, sort_keys=True, allow_nan=False) + "\n")
    return path


def load_metrics(name: str) -> dict[str, Any]:
    """Read ``<artifacts>/metrics/<name>.json``, with a clear error if missing or invalid."""
    path = metrics_path(name)
    if not path.exists():
        raise FileNotFoundError(f"no metrics {name!r} at {path}; run the notebook that writes them")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); delete it and rerun") from err


def save_figure(fig: Any, name: str) -> Path:
    """Save a matplotlib figure as ``<artifacts>/figures/<name>.png`` (150 dpi)."""
    path = figure_path(name)
    with write_atomically(path) as temporary:
        fig.savefig(temporary, dpi=150, bbox_inches="tight")
    return path
