import os

import numpy as np
import pytest

from helpers import artifacts
from helpers.model import build_cnn
from helpers.paths import PROJECT_ROOT, artifacts_dir, write_atomically


def test_artifacts_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_AD_ARTIFACTS", str(tmp_path / "x"))
    assert artifacts_dir() == tmp_path / "x"
    monkeypatch.setenv("MNIST_AD_ARTIFACTS", "build/somewhere")
    assert artifacts_dir() == PROJECT_ROOT / "build" / "somewhere"
    monkeypatch.delenv("MNIST_AD_ARTIFACTS")
    assert artifacts_dir() == PROJECT_ROOT / "artifacts"


def test_write_atomically_keeps_the_old_file_on_failure_and_the_umask_on_success(tmp_path):
    target = tmp_path / "sub" / "metrics.json"
    with write_atomically(target) as scratch:
        scratch.write_text("new")
    assert target.read_text() == "new"
    mask = os.umask(0o027)
    try:
        with write_atomically(target) as scratch:
            scratch.write_text("newer")
    finally:
        os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o640  # not a temporary file's 0o600
    with pytest.raises(RuntimeError), write_atomically(target) as scratch:
        scratch.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "newer"
    assert sorted(p.name for p in target.parent.iterdir()) == ["metrics.json"]


def test_model_round_trip(random_images):
    x, _ = random_images
    model = build_cnn()
    path = artifacts.save_model(model, "standard")
    assert path.suffix == ".keras" and path.exists()
    np.testing.assert_allclose(artifacts.load_model("standard")(x), model(x), rtol=1e-6)


def test_missing_model_names_the_notebook_to_run():
    with pytest.raises(FileNotFoundError, match="02_training_a_cnn.ipynb"):
        artifacts.load_model("standard")


def test_corrupt_model_is_reported():
    path = artifacts.model_path("fgsm_at")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a keras file")
    with pytest.raises(ValueError, match="corrupt.*04_adversarial_training"):
        artifacts.load_model("fgsm_at")


def test_load_or_train_trains_only_when_missing(capsys):
    calls = []

    def train():
        calls.append(1)
        return build_cnn()

    artifacts.load_or_train("standard", train)
    assert "training one now" in capsys.readouterr().out
    artifacts.load_or_train("standard", train)
    assert calls == [1]


def test_metrics_round_trip_and_errors():
    artifacts.save_metrics("m", {"clean": 0.99, "fgsm": {"0.25": 0.3}})
    assert artifacts.load_metrics("m")["fgsm"]["0.25"] == 0.3
    with pytest.raises(FileNotFoundError):
        artifacts.load_metrics("absent")
    artifacts.metrics_path("bad").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        artifacts.load_metrics("bad")
    with pytest.raises(ValueError, match="artifact names"):
        artifacts.model_path("../escape")


def test_a_save_that_dies_midway_keeps_the_old_model(random_images, monkeypatch):
    x, _ = random_images
    model = build_cnn()
    artifacts.save_model(model, "standard")
    before = artifacts.load_model("standard")(x).numpy()

    def dies_midway(self, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt

    with monkeypatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(type(model), "save", dies_midway)
        artifacts.save_model(build_cnn(), "standard")
    np.testing.assert_allclose(artifacts.load_model("standard")(x).numpy(), before, rtol=1e-6)
    assert [p.name for p in artifacts.model_path("standard").parent.iterdir()] == [
        "standard.keras"
    ]  # no temporary file left behind


def test_metrics_are_strict_json_and_name_the_bad_key():
    artifacts.save_metrics("m", {"a": 0.5})
    with pytest.raises(ValueError, match=r"models\.pgd_at\.robust\.1 is not a finite number"):
        artifacts.save_metrics("m", {"models": {"pgd_at": {"robust": [0.1, float("nan")]}}})
    with pytest.raises(ValueError, match="clean"):
        artifacts.save_metrics("m", {"clean": float("inf")})
    assert artifacts.load_metrics("m") == {"a": 0.5}  # the refused writes changed nothing


def test_concurrent_writers_and_readers_never_see_half_a_file():
    """Two writers and a reader on one metrics file: every read is one whole version."""
    import json
    import threading

    artifacts.save_metrics("shared", {"writer": -1, "payload": [0] * 2000})
    path = artifacts.metrics_path("shared")
    stop, bad = threading.Event(), []

    def write(writer: int) -> None:
        for i in range(60):
            artifacts.save_metrics("shared", {"writer": writer, "i": i, "payload": [i] * 2000})

    def read() -> None:
        while not stop.is_set():
            try:
                json.loads(path.read_text())
            except ValueError as err:
                bad.append(err)

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(w,)) for w in (0, 1)]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    stop.set()
    reader.join()
    assert not bad, bad[:3]
    assert artifacts.load_metrics("shared")["i"] == 59
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no leftovers
