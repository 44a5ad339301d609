import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from helpers import data
from helpers.paths import PROJECT_ROOT, mnist_path

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def mnist():
    return data.load_mnist()


def test_shipped_mnist_is_genuine(mnist):
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_train.dtype == np.uint8
    assert mnist.x_test.shape == (10000, 28, 28)
    assert data.class_counts(mnist.y_train).tolist() == TRAIN_COUNTS
    assert data.class_counts(mnist.y_test).tolist() == TEST_COUNTS
    assert mnist.y_train[:5].tolist() == [5, 0, 4, 1, 9]


def test_altered_array_fails_checksum(mnist, tmp_path):
    x_train = mnist.x_train.copy()
    x_train[123, 14, 14] ^= 1  # one pixel, one bit
    path = tmp_path / "mnist.npz"
    np.savez_compressed(path, **{**mnist._asdict(), "x_train": x_train})
    with pytest.raises(data.MnistDataError, match=r"x_train fails its SHA-256 check.*git checkout"):
        data.load_mnist(path)


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "not_a_zip"])
def test_damaged_file_is_refused(tmp_path, damage):
    path = tmp_path / "mnist.npz"
    raw = bytearray(mnist_path().read_bytes())
    if damage == "flip_byte":
        raw[len(raw) // 2] ^= 0xFF
    elif damage == "truncate":
        raw = raw[: len(raw) // 3]
    else:
        raw = bytearray(b"hello, not an archive")
    path.write_bytes(bytes(raw))
    with pytest.raises(data.MnistDataError, match="truncated or corrupt"):
        data.load_mnist(path)


def test_wrong_shape_is_refused(tmp_path, mnist):
    path = tmp_path / "mnist.npz"
    np.savez_compressed(path, **{**mnist._asdict(), "y_test": mnist.y_test[:10]})
    with pytest.raises(data.MnistDataError, match=r"y_test has dtype uint8 and shape \(10,\)"):
        data.load_mnist(path)


def test_missing_file_explains_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("MNIST_ALLOW_DOWNLOAD", raising=False)
    with pytest.raises(FileNotFoundError, match=r"git checkout -- data/mnist.npz.*allow_download"):
        data.load_mnist(tmp_path / "absent.npz")


def test_environment_variable_selects_the_file(tmp_path, monkeypatch):
    copy = tmp_path / "elsewhere.npz"
    shutil.copy(mnist_path(), copy)
    monkeypatch.setenv("MNIST_NPZ", str(copy))
    assert mnist_path() == copy
    copy.write_bytes(b"broken")
    with pytest.raises(data.MnistDataError, match="elsewhere.npz"):
        data.load_mnist()


def test_download_only_when_absent_and_announced(tmp_path, monkeypatch, capsys, mnist):
    calls = []

    def fake_download():
        calls.append(1)
        return mnist._asdict()

    monkeypatch.setattr(data, "_download_with_keras", fake_download)
    loaded = data.load_mnist(tmp_path / "absent.npz", allow_download=True)
    assert calls == [1] and loaded.y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert "downloaded with keras.datasets.mnist" in capsys.readouterr().out

    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"broken")
    with pytest.raises(data.MnistDataError):
        data.load_mnist(corrupt, allow_download=True)
    assert calls == [1], "a corrupt file must never be replaced by a download"


def test_downloaded_data_is_verified_too(tmp_path, monkeypatch, mnist):
    bad = {**mnist._asdict(), "y_train": np.zeros(60000, np.uint8)}
    monkeypatch.setattr(data, "_download_with_keras", lambda: bad)
    with pytest.raises(data.MnistDataError, match="y_train fails"):
        data.load_mnist(tmp_path / "absent.npz", allow_download=True)


def test_preprocess_images_scales_and_adds_channel():
    raw = np.array([[[0, 255], [51, 102]]], dtype=np.uint8).repeat(14, 1).repeat(14, 2)
    x = data.preprocess_images(raw)
    assert x.shape == (1, 28, 28, 1) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert np.isclose(x[0, 14, 0, 0], 0.2)


@pytest.mark.parametrize(
    "bad, error",
    [(np.zeros((2, 28, 28), np.float32), TypeError), (np.zeros((2, 28, 27), np.uint8), ValueError)],
)
def test_preprocess_images_rejects_bad_input(bad, error):
    with pytest.raises(error):
        data.preprocess_images(bad)


def test_one_hot_and_back():
    y = np.array([3, 0, 9])
    encoded = data.one_hot(y)
    assert encoded.shape == (3, 10) and encoded.sum() == 3 and encoded[0, 3] == 1
    assert data.to_int_labels(encoded).tolist() == [3, 0, 9]
    with pytest.raises(ValueError, match="0..9"):
        data.one_hot(np.array([10]))


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((2, 28, 28)), "shape"),
        (np.full((2, 28, 28, 1), 255.0), "raw 0..255"),
        (np.full((2, 28, 28, 1), -0.1), r"\[0, 1\]"),
        (np.full((2, 28, 28, 1), np.nan), "NaN"),
        (np.zeros((2, 28, 28, 1), np.uint8), "floating point"),
    ],
)
def test_validate_images_explains_what_is_wrong(images, message):
    with pytest.raises(ValueError, match=message):
        data.validate_images(images)


def test_splits_are_stratified_and_disjoint():
    x = np.arange(1000, dtype=np.float32)
    y = np.repeat(np.arange(10), 100)
    x_tr, _, x_val, y_val = data.train_validation_split(x, y, 0.2, seed=1)
    assert len(x_val) == 200 and data.class_counts(y_val).tolist() == [20] * 10
    assert not set(x_tr.tolist()) & set(x_val.tolist())
    _, y_sub = data.stratified_subset(x, y, 50, seed=1)
    assert data.class_counts(y_sub).tolist() == [5] * 10
    with pytest.raises(ValueError):
        data.train_validation_split(x, y, 1.0)


def test_prepare_mnist_gives_model_ready_splits():
    splits = data.prepare_mnist(n_train=1000, n_test=200, seed=0)
    assert splits.x_train.shape == (900, 28, 28, 1) and splits.x_val.shape == (100, 28, 28, 1)
    assert splits.x_test.shape == (200, 28, 28, 1)
    assert data.class_counts(splits.y_test).min() >= 17
    data.validate_images(splits.x_train)


@pytest.mark.parametrize(
    "labels, message",
    [
        (np.array([[3], [1]]), r"y.ravel\(\)"),
        (np.array([2.7, 1.0]), "whole numbers"),
        (np.zeros((2, 10)), "exactly one 1"),
        (np.eye(5)[[0, 1]], r"\(n, 10\) one-hot"),
        (np.array([True, False]), "numbers"),
    ],
)
def test_labels_that_could_be_misread_are_refused(labels, message):
    with pytest.raises(ValueError, match=message):
        data.to_int_labels(labels)


def test_labels_out_of_range_are_refused():
    x = np.zeros((2, 28, 28, 1), np.float32)
    with pytest.raises(ValueError, match=r"0\.\.9"):
        data.labels_for(x, np.array([1, 42]))


def test_an_npy_file_is_refused_with_a_clear_error(tmp_path):
    path = tmp_path / "mnist.npy"
    np.save(path, np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(data.MnistDataError, match="single array, not an .npz archive"):
        data.load_mnist(path)


def test_the_download_gives_up_on_a_server_that_never_answers(monkeypatch):
    """A network that accepts the connection but never answers must not hang the course."""
    import socket
    import time
    import urllib.request

    import keras

    with socket.socket() as server:  # listens (the kernel completes the handshake), never replies
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/mnist.npz"
        monkeypatch.setattr(keras.datasets.mnist, "load_data", lambda: urllib.request.urlopen(url))
        started = time.monotonic()
        with pytest.raises(data.MnistDataError, match=r"did not answer within 0.5 s.*mnist.npz"):
            data._download_with_keras(timeout=0.5)
        assert time.monotonic() - started < 10
    assert socket.getdefaulttimeout() is None  # the process's default is restored


@pytest.mark.parametrize("given, expected", [(None, "False 0"), ("1", "True 1")])
def test_big_arrays_in_ordinary_pages_unless_the_user_says_otherwise(given, expected):
    """Importing the course library turns off NumPy's huge pages (numpy imported first, as
    the notebooks do) and passes the setting on to child processes; a user's own
    NUMPY_MADVISE_HUGEPAGE is kept."""
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if given is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = given
    probe = (
        "import os, numpy, helpers\n"
        "from numpy._core.multiarray import _set_madvise_hugepage as use\n"
        "print(use(False), os.environ['NUMPY_MADVISE_HUGEPAGE'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT_ROOT, env=env, capture_output=True,
        text=True, check=True,
    )  # fmt: skip
    assert out.stdout.split("\n")[0] == expected
