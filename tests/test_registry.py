import json

import pytest

from helpers import registry
from helpers.paths import PROJECT_ROOT
from helpers.training import Defense


def test_every_model_names_a_notebook_that_saves_it():
    for name, spec in registry.MODELS.items():
        path = PROJECT_ROOT / spec.notebook
        assert path.exists(), f"{name}: {spec.notebook} does not exist"
        cells = json.loads(path.read_text())["cells"]
        text = "".join("".join(c["source"]) for c in cells)
        assert f'"{name}"' in text, f"{spec.notebook} never names the model {name!r}"


def test_labels_and_course_order_come_from_one_table():
    assert list(registry.MODEL_LABELS) == list(registry.COURSE_MODELS)
    assert registry.MODEL_LABELS["pgd_at"] == registry.MODELS["pgd_at"].label
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        registry.spec("nope")


def test_describe_states_the_recipe():
    text = registry.describe("pgd_at")
    assert "PGD-5 examples at ε=0.3" in text and "ramped up over the first 30%" in text
    assert "moving average of its weights (decay 0.999)" in text
    assert "clean images only" in registry.describe("standard")


def test_train_recipe_records_what_ran(small_mnist):
    _, history, settings = registry.train_recipe(
        "fgsm_at",
        n_train=200,
        epochs=1,
        progress=False,
        defense=Defense("fgsm", eps=0.1, adv_fraction=1.0),
    )
    assert settings["defense"] == {
        "kind": "fgsm",
        "eps": 0.1,
        "steps": 1,
        "rel_step": None,
        "adv_fraction": 1.0,
        "beta": 6.0,  # every field of the Defense is recorded, TRADES' weight too
        "ramp": 0.0,  # and the ε ramp's
    }
    assert settings["epochs"] == 1 and settings["n_train"] == 180 and settings["seed"] == 0
    assert len(history["loss"]) == 1 and "adv_accuracy" in history
    json.dumps(settings)  # the record is JSON-ready
    with pytest.raises(ValueError, match="cannot change"):
        registry.train_recipe("standard", n_train=200, epochs=1, width=2)


def test_a_recipe_trained_in_bf16_comes_back_in_float32(small_mnist):
    model, _, settings = registry.train_recipe(
        "standard", n_train=200, epochs=1, progress=False, precision="mixed_bfloat16"
    )
    assert settings["precision"] == "mixed_bfloat16"
    assert model.get_layer("conv1").compute_dtype == "float32"  # attacks see float32


def test_train_recipe_changes_the_network_it_is_told_to_and_records_it(small_mnist):
    model, _, settings = registry.train_recipe(
        "standard", n_train=200, epochs=1, progress=False, build={"dropout": False}
    )
    assert settings["build"] == {**registry.spec("standard").build, "dropout": False}
    assert not any("dropout" in layer.name for layer in model.layers)
    assert registry.spec("standard").build["dropout"]  # the recipe itself is unchanged


def test_summarize_training_measures_on_the_test_images_it_is_given(small_mnist, trained_cnn):
    from helpers.evaluation import fgsm_accuracy_curve

    x, y = small_mnist.x_test[:120], small_mnist.y_test[:120]
    summary = registry.summarize_training(trained_cnn, {"loss": [0.1]}, {"epochs": 1}, test=(x, y))
    curve = fgsm_accuracy_curve(trained_cnn, x, y, [0.0, registry.EPS])
    assert summary["n_test"] == 120 and summary["epochs"] == 1
    assert summary["clean"] == curve["0"] and summary["fgsm"]["0.25"] == curve["0.25"]
    assert summary["fgsm"]["0.25"] < summary["clean"]  # the attack did something
