"""Shared fixtures: tiny models and small data, so unit tests stay fast."""

from __future__ import annotations

import os
import shutil
import socket
from typing import NoReturn

from tooling.quiet import quiet_stderr

# Before TensorFlow's import: its start-up notices would reach the terminal from every
# process of `make unit` (pytest-xdist's workers and the process that leads them).
quiet_stderr()

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from helpers.data import prepare_mnist  # noqa: E402
from helpers.model import build_cnn  # noqa: E402
from helpers.training import set_seed, train_model  # noqa: E402


@pytest.fixture(autouse=True)
def _scratch_artifacts(tmp_path, monkeypatch):
    """Every test writes models/metrics into its own temporary folder."""
    monkeypatch.setenv("MNIST_AD_ARTIFACTS", str(tmp_path / "artifacts"))


@pytest.fixture(scope="session")
def small_mnist():
    """2,000 training and 500 test images of real MNIST (stratified, seeded)."""
    return prepare_mnist(n_train=2000, n_test=500, seed=0)


@pytest.fixture(scope="session")
def trained_cnn(small_mnist):
    """The course CNN after 4 epochs on 1,800 images (about 95% on its test subset)."""
    set_seed(0)
    model = build_cnn()
    d = small_mnist
    train_model(model, d.x_train, d.y_train, epochs=4, batch_size=32, progress=False)
    return model


def tiny_smooth_model(seed: int = 0) -> keras.Model:
    """A small dense classifier with tanh units (smooth, for finite differences).

    It follows the course's convention (a "logits" layer, then a softmax layer), so the
    attacks accept it like any Keras classifier built that way.
    """
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(16, activation="tanh")(x)
    logits = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, keras.layers.Softmax(name="probabilities")(logits))


@pytest.fixture
def random_images():
    """Eight random images (8, 28, 28, 1) in [0, 1] and integer labels."""
    rng = np.random.default_rng(0)
    return rng.uniform(0, 1, (8, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, 8)


# -- for the tests that start servers and a browser (browser, website, hub) ----------------


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def skip_or_fail(reason: str, test: str) -> NoReturn:
    """Skip ``test`` (e.g. ``"browser test"``) because of ``reason``; under CI
    (``CI=true``) fail instead, since there every test must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; under CI the {test} must run, not skip")
    pytest.skip(reason)


def chromium_path(test: str) -> str:
    """Debian's chromium (or ``CHROMIUM_PATH``); without it :func:`skip_or_fail`."""
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium")
    if path:
        return path
    skip_or_fail("Debian's chromium is not installed (apt-get install chromium)", test)
