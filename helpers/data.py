"""MNIST, loaded offline from ``data/mnist.npz`` and verified, plus preprocessing.

Shapes and ranges used throughout the course:

- raw images: ``uint8`` of shape ``(n, 28, 28)``, values 0..255
- model images: ``float32`` of shape ``(n, 28, 28, 1)``, values in [0, 1]
- labels: ``int`` of shape ``(n,)`` with values 0..9, or one-hot ``float32`` ``(n, 10)``
"""

from __future__ import annotations

import hashlib
import os
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from helpers.paths import mnist_path

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28, 1)

#: SHA-256 of each array's ``.tobytes()`` in the Keras layout (genuine MNIST).
MNIST_SHA256: dict[str, str] = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
MNIST_SHAPES: dict[str, tuple[int, ...]] = {
    "x_train": (60000, 28, 28),
    "y_train": (60000,),
    "x_test": (10000, 28, 28),
    "y_test": (10000,),
}

_FIX_HINT = (
    "Restore the shipped file with `git checkout -- data/mnist.npz`, point the "
    "MNIST_NPZ environment variable (or the `path` argument) at a good copy, or delete "
    "the file and load with allow_download=True to fetch MNIST through Keras."
)


class MnistDataError(ValueError):
    """The MNIST file exists but is not the genuine data set (corrupt or altered)."""


class Mnist(NamedTuple):
    """The four MNIST arrays in the Keras layout (raw ``uint8``)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def verify_mnist_arrays(arrays: dict[str, np.ndarray], source: str) -> None:
    """Check names, shapes, dtypes and SHA-256 sums; raise :class:`MnistDataError` if off."""
    missing = sorted(set(MNIST_SHA256) - set(arrays))
    if missing:
        raise MnistDataError(f"{source}: arrays {missing} are missing. {_FIX_HINT}")
    for name, digest in MNIST_SHA256.items():
        arr = arrays[name]
        if arr.dtype != np.uint8 or arr.shape != MNIST_SHAPES[name]:
            raise MnistDataError(
                f"{source}: {name} has dtype {arr.dtype} and shape {arr.shape}, expected "
                f"uint8 {MNIST_SHAPES[name]}. {_FIX_HINT}"
            )
        actual = hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
        if actual != digest:
            raise MnistDataError(
                f"{source}: {name} fails its SHA-256 check (got {actual[:12]}..., expected "
                f"{digest[:12]}...): the file is altered or corrupt. {_FIX_HINT}"
            )


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError, KeyError) as err:
        raise MnistDataError(
            f"{path} cannot be read as an .npz archive ({type(err).__name__}: {err}); "
            f"it is truncated or corrupt. {_FIX_HINT}"
        ) from err
    if not isinstance(loaded, np.lib.npyio.NpzFile):  # a single .npy array
        raise MnistDataError(
            f"{path} holds a single array, not an .npz archive with x_train, y_train, x_test "
            f"and y_test. {_FIX_HINT}"
        )
    try:
        with loaded as npz:
            return {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError, KeyError) as err:
        raise MnistDataError(
            f"{path} cannot be read as an .npz archive ({type(err).__name__}: {err}); "
            f"it is truncated or corrupt. {_FIX_HINT}"
        ) from err


#: Seconds the download may wait for the server before giving up (per connection attempt).
DOWNLOAD_TIMEOUT = 30.0


def _download_with_keras(timeout: float = DOWNLOAD_TIMEOUT) -> dict[str, np.ndarray]:
    """MNIST through ``keras.datasets.mnist``, giving up after ``timeout`` seconds without
    an answer; any failure is a :class:`MnistDataError` that says how to work offline."""
    import socket

    import keras

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as err:  # urllib, socket and Keras' own errors: all mean "no data"
        raise MnistDataError(
            f"downloading MNIST failed ({type(err).__name__}: {err}); the machine seems to be "
            f"offline or the server did not answer within {timeout:g} s. The course needs no "
            "network: restore the shipped file with `git checkout -- data/mnist.npz` or set "
            "MNIST_NPZ to a copy."
        ) from err
    finally:
        socket.setdefaulttimeout(previous)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def load_mnist(path: str | Path | None = None, allow_download: bool | None = None) -> Mnist:
    """Load MNIST from a local ``.npz`` file and verify it is the genuine data set.

    Args:
        path: the ``.npz`` file; default ``$MNIST_NPZ`` or the shipped ``data/mnist.npz``.
        allow_download: only used when the file does not exist. If true, print a note
            and fetch MNIST with ``keras.datasets.mnist`` (needs internet). Default: the
            ``MNIST_ALLOW_DOWNLOAD`` environment variable (``1`` enables), else off.
            A file that exists but is corrupt is never replaced by a download.

    Returns:
        :class:`Mnist` with ``x_train`` (60000, 28, 28), ``y_train`` (60000,),
        ``x_test`` (10000, 28, 28), ``y_test`` (10000,), all ``uint8``.

    Raises:
        FileNotFoundError: the file is missing and downloading is not allowed.
        MnistDataError: the file is truncated, not an archive, or fails a checksum.
    """
    path = Path(path).expanduser() if path is not None else mnist_path()
    if allow_download is None:
        allow_download = os.environ.get("MNIST_ALLOW_DOWNLOAD", "") == "1"
    if path.exists():
        arrays = _read_npz(path)
        source = str(path)
    elif allow_download:
        print(
            f"Note: {path} does not exist, so MNIST is being downloaded with "
            "keras.datasets.mnist (needs internet; cached under ~/.keras/datasets)."
        )
        arrays = _download_with_keras()
        source = "keras.datasets.mnist download"
    else:
        raise FileNotFoundError(
            f"MNIST file not found: {path}. The course ships it as data/mnist.npz: run "
            "`git checkout -- data/mnist.npz`, "
            "or set MNIST_NPZ to a copy. With internet access you may instead download it "
            "through Keras: load_mnist(allow_download=True) or MNIST_ALLOW_DOWNLOAD=1."
        )
    verify_mnist_arrays(arrays, source)
    return Mnist(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])


def preprocess_images(x: np.ndarray) -> np.ndarray:
    """Scale raw ``uint8`` images (n, 28, 28) to ``float32`` (n, 28, 28, 1) in [0, 1]."""
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise TypeError(f"expected raw uint8 images (0..255), got dtype {x.dtype}")
    if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE[:2]:
        raise ValueError(f"expected images of shape (n, 28, 28), got {x.shape}")
    return (x.astype(np.float32) / 255.0)[..., np.newaxis]


def one_hot(y: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Integer labels ``(n,)`` in 0..num_classes-1 to one-hot ``float32`` ``(n, num_classes)``."""
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"expected integer labels of shape (n,), got {y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {y.min()}..{y.max()}")
    return np.eye(num_classes, dtype=np.float32)[y]


def to_int_labels(y: np.ndarray) -> np.ndarray:
    """Labels as ``int64`` ``(n,)``, from whole-number labels ``(n,)`` or one-hot rows
    ``(n, 10)`` (exactly one 1 per row); anything else is refused with ``ValueError``, so a
    wrongly shaped label array can never be read silently as something else."""
    y = np.asarray(y)
    if y.dtype == bool or not np.issubdtype(y.dtype, np.number):
        raise ValueError(f"labels must be numbers, got dtype {y.dtype}")
    if y.ndim == 2 and y.shape[1] == NUM_CLASSES:
        if y.size and not (((y == 0) | (y == 1)).all() and (y.sum(axis=1) == 1).all()):
            raise ValueError("one-hot labels need exactly one 1 (and nine 0s) in every row")
        return y.argmax(axis=1).astype(np.int64)
    if y.ndim != 1:
        hint = (
            " (use y.ravel() for labels shaped (n, 1))" if y.ndim == 2 and y.shape[1] == 1 else ""
        )
        raise ValueError(
            f"labels must be (n,) integers or (n, {NUM_CLASSES}) one-hot, got shape {y.shape}{hint}"
        )
    if y.size and not (np.isfinite(y).all() and (y == np.round(y)).all()):
        raise ValueError("labels must be whole numbers 0..9, got fractional or non-finite values")
    return y.astype(np.int64)


def labels_for(x: np.ndarray, y: np.ndarray, name: str = "y") -> np.ndarray:
    """The labels ``y`` of the images ``x`` as ``int64`` ``(n,)``, or ``ValueError`` when
    there is not exactly one label per image or a label lies outside 0..9."""
    labels = to_int_labels(y)
    if len(labels) != len(x):
        raise ValueError(f"got {len(x)} images but {len(labels)} labels in {name}")
    if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise ValueError(f"{name}: labels must lie in 0..{NUM_CLASSES - 1}")
    return labels


def validate_images(x: np.ndarray, name: str = "x") -> np.ndarray:
    """Check model-ready images and return them as ``float32``.

    Raises ``ValueError`` unless ``x`` has shape ``(n, 28, 28, 1)``, is finite and lies in
    [0, 1]. A common mistake -- raw 0..255 pixels -- gets its own hint.
    """
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[1:] != IMAGE_SHAPE:
        raise ValueError(
            f"{name} must have shape (n, 28, 28, 1), got {x.shape}; "
            "use helpers.data.preprocess_images on raw MNIST images"
        )
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(
            f"{name} must be floating point in [0, 1], got dtype {x.dtype}; "
            "use helpers.data.preprocess_images to scale raw pixels"
        )
    if x.size and not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if x.size and (x.min() < 0.0 or x.max() > 1.0):
        hint = " (looks like raw 0..255 pixels: divide by 255)" if x.max() > 1.0 else ""
        raise ValueError(f"{name} must lie in [0, 1], got [{x.min():.3g}, {x.max():.3g}]{hint}")
    return x.astype(np.float32, copy=False)


def stratified_subset(
    x: np.ndarray, y: np.ndarray, n: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``n`` examples with the class balance of ``y`` (all of them if ``n >= len(y)``)."""
    if n <= 0:
        raise ValueError(f"subset size must be positive, got {n}")
    if n >= len(y):
        return x, y
    from sklearn.model_selection import train_test_split

    labels = to_int_labels(y)
    stratify = labels if n >= NUM_CLASSES else None
    idx, _ = train_test_split(
        np.arange(len(labels)), train_size=n, random_state=seed, stratify=stratify
    )
    idx = np.sort(idx)
    return x[idx], y[idx]


def train_validation_split(
    x: np.ndarray, y: np.ndarray, validation_fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified split into ``(x_train, y_train, x_val, y_val)``.

    ``validation_fraction`` must lie strictly between 0 and 1.
    """
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1), got {validation_fraction}")
    from sklearn.model_selection import train_test_split

    labels = to_int_labels(y)
    n_val = max(1, round(validation_fraction * len(labels)))
    stratify = labels if n_val >= NUM_CLASSES and len(labels) - n_val >= NUM_CLASSES else None
    x_tr, x_val, y_tr, y_val = train_test_split(
        x, y, test_size=n_val, random_state=seed, stratify=stratify
    )
    return x_tr, y_tr, x_val, y_val


def class_counts(y: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Number of examples per class, shape ``(num_classes,)``."""
    return np.bincount(to_int_labels(y), minlength=num_classes)


class PreparedMnist(NamedTuple):
    """Model-ready splits: images ``float32`` (n, 28, 28, 1) in [0, 1], labels ``int`` (n,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def prepare_mnist(
    n_train: int | None = None,
    n_test: int | None = None,
    validation_fraction: float = 0.1,
    seed: int = 0,
    path: str | Path | None = None,
) -> PreparedMnist:
    """Load, verify, scale and split MNIST in one call.

    Args:
        n_train: use a stratified subset of this many training images (before the
            validation split); ``None`` = all 60,000.
        n_test: likewise for the 10,000 test images; the subset is fixed by ``seed``.
        validation_fraction: share of the training images held out for validation.
        seed: fixes the subsets and the split.
        path: see :func:`load_mnist`.
    """
    mnist = load_mnist(path)
    x_train, y_train = preprocess_images(mnist.x_train), mnist.y_train.astype(np.int64)
    x_test, y_test = preprocess_images(mnist.x_test), mnist.y_test.astype(np.int64)
    if n_train is not None:
        x_train, y_train = stratified_subset(x_train, y_train, n_train, seed)
    if n_test is not None:
        x_test, y_test = stratified_subset(x_test, y_test, n_test, seed)
    x_tr, y_tr, x_val, y_val = train_validation_split(x_train, y_train, validation_fraction, seed)
    return PreparedMnist(x_tr, y_tr, x_val, y_val, x_test, y_test)
