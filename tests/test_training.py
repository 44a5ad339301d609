import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_smooth_model

from helpers import attacks, certify
from helpers.evaluation import accuracy
from helpers.model import build_cnn, logits_model
from helpers.training import (
    Defense,
    Monitor,
    average_decay,
    eps_at,
    ibp_loss,
    ibp_schedule,
    kl_divergence,
    learning_rate_at,
    set_seed,
    trades_examples,
    train_model,
    training_loss,
)


def test_history_has_one_entry_per_epoch(small_mnist):
    d = small_mnist
    set_seed(0)
    history = train_model(
        build_cnn(),
        d.x_train[:600],
        d.y_train[:600],
        epochs=2,
        progress=False,
        validation_data=(d.x_val, d.y_val),
        monitor=Monitor(eps=0.1),
    )
    assert set(history) == {
        "loss",
        "accuracy",
        "epoch_seconds",
        "val_accuracy",
        "val_fgsm_accuracy",
    }
    assert all(len(v) == 2 for v in history.values())
    assert history["loss"][1] < history["loss"][0]


def test_same_seed_same_model(small_mnist):
    d = small_mnist
    weights = []
    for _ in range(2):
        set_seed(7)
        model = build_cnn()
        train_model(
            model,
            d.x_train[:300],
            d.y_train[:300],
            epochs=1,
            defense=Defense("fgsm"),
            progress=False,
            seed=7,
        )
        weights.append(model.get_layer("logits").get_weights()[0])
    np.testing.assert_array_equal(weights[0], weights[1])


@pytest.mark.parametrize("defense", ["fgsm", "fgsm_rs", "pgd", "trades"])
def test_adversarial_training_reports_both_halves(defense, random_images):
    x, y = random_images
    model = tiny_smooth_model()
    model.compile(optimizer="adam")
    history = train_model(
        model,
        np.repeat(x, 4, 0),
        np.repeat(y, 4),
        epochs=1,
        batch_size=16,
        defense=Defense(defense, eps=0.1, steps=2, adv_fraction=0.5),
        progress=False,
        validation_data=(x, y),
        monitor=Monitor(eps=0.1, pgd_steps=2),
    )
    for key in ("accuracy", "adv_accuracy", "val_fgsm_accuracy", "val_pgd_accuracy"):
        assert 0.0 <= history[key][0] <= 1.0


def test_all_adversarial_training_reports_no_clean_accuracy(random_images):
    """With adv_fraction = 1 no clean image is trained on: no made-up clean accuracy."""
    x, y = random_images
    model = tiny_smooth_model()
    model.compile(optimizer="adam")
    history = train_model(
        model,
        x,
        y,
        epochs=1,
        batch_size=16,
        defense=Defense("fgsm_rs", eps=0.1, adv_fraction=1.0),
        progress=False,
    )
    assert "accuracy" not in history and 0.0 <= history["adv_accuracy"][0] <= 1.0


def test_fgsm_training_makes_the_model_resist_fgsm(small_mnist, trained_cnn):
    d = small_mnist
    set_seed(0)
    defended = build_cnn()
    train_model(
        defended,
        d.x_train,
        d.y_train,
        epochs=4,
        batch_size=32,
        defense=Defense("fgsm"),
        progress=False,
    )

    def fgsm_accuracy(model):
        return accuracy(model, attacks.fgsm(model, d.x_test, d.y_test, 0.25), d.y_test)

    assert fgsm_accuracy(defended) > fgsm_accuracy(trained_cnn) + 0.2
    assert accuracy(defended, d.x_test, d.y_test) > 0.85


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"epochs": 0}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"defense": Defense("magic")}, "defense"),
        ({"defense": Defense("fgsm", eps=2.0)}, r"\[0, 1\]"),
        ({"defense": Defense("fgsm", eps=True)}, "boolean"),
        ({"defense": Defense("fgsm", adv_fraction=0.0)}, "adv_fraction"),
        ({"defense": Defense("pgd", steps=2, rel_step=-1.0)}, "rel_step"),
        ({"defense": Defense("pgd", steps=0)}, "steps"),
        ({"defense": Defense("trades", steps=2, beta=-1.0)}, "beta"),
        ({"defense": Defense("ibp", ramp=0.0)}, "ramp"),
        ({"defense": Defense("pgd", steps=2, ramp=1.5)}, "ramp"),
        ({"weight_average": 1.0}, "weight_average"),
        ({"weight_average": -0.1}, "weight_average"),
        ({"monitor": Monitor(certified=True)}, "budget"),
        ({"monitor": Monitor(eps=0.1)}, "validation_data"),
        ({"monitor": Monitor(pgd_steps=3)}, "budget"),
    ],
)
def test_invalid_arguments_raise(kwargs, message, random_images):
    x, y = random_images
    with pytest.raises(ValueError, match=message):
        train_model(build_cnn(), x, y, **{"epochs": 1, "progress": False, **kwargs})


def test_refuses_unscaled_images(random_images):
    x, y = random_images
    with pytest.raises(ValueError, match="raw 0..255"):
        train_model(build_cnn(), x * 255, y, epochs=1, progress=False)


def test_learning_rate_schedules():
    assert learning_rate_at(0.0, 1e-3, "cosine") == pytest.approx(1e-3)
    assert learning_rate_at(1.0, 1e-3, "cosine") == pytest.approx(0.0, abs=1e-12)
    assert learning_rate_at(0.5, 1e-3, "constant") == 1e-3
    assert learning_rate_at(0.4, 1e-3, "one_cycle") == pytest.approx(1e-3)
    assert learning_rate_at(0.2, 1e-3, "one_cycle") == pytest.approx(5e-4)
    with pytest.raises(ValueError, match="lr_schedule"):
        learning_rate_at(0.5, 1e-3, "sawtooth")


def test_schedule_is_applied_and_the_base_rate_restored(random_images, monkeypatch):
    x, y = random_images
    model = build_cnn(learning_rate=2e-3)
    seen = []
    original = learning_rate_at
    monkeypatch.setattr(
        "helpers.training.learning_rate_at", lambda *a: seen.append(original(*a)) or seen[-1]
    )
    train_model(model, x, y, epochs=2, batch_size=4, lr_schedule="cosine", progress=False)
    assert seen[0] == pytest.approx(2e-3) and seen[-1] < seen[0] and len(seen) == 4
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(2e-3)


def test_restore_best_keeps_the_best_epoch(small_mnist):
    d = small_mnist
    set_seed(0)
    model = build_cnn()
    history = train_model(
        model,
        d.x_train[:500],
        d.y_train[:500],
        epochs=3,
        progress=False,
        validation_data=(d.x_val, d.y_val),
        monitor=Monitor(restore_best="val_accuracy"),
    )
    best = int(history["best_epoch"][0])
    assert history["val_accuracy"][best - 1] == max(history["val_accuracy"])
    assert accuracy(model, d.x_val, d.y_val) == pytest.approx(max(history["val_accuracy"]))
    with pytest.raises(ValueError, match="restore_best"):
        train_model(
            model,
            d.x_train[:10],
            d.y_train[:10],
            epochs=1,
            monitor=Monitor(restore_best="val_pgd_accuracy"),
        )


def test_a_diverging_run_stops_at_the_first_non_finite_loss(random_images):
    x, y = random_images
    model = build_cnn(learning_rate=0.5)
    model.optimizer.learning_rate.assign(1e12)
    with pytest.raises(FloatingPointError, match="diverged.*epoch 1"):
        train_model(
            model, np.repeat(x, 8, 0), np.repeat(y, 8), epochs=3, batch_size=8, progress=False
        )


def test_kl_divergence_is_zero_for_equal_and_positive_for_different_predictions():
    rng = np.random.default_rng(0)
    p, q = rng.normal(size=(2, 5, 10)).astype(np.float32)
    np.testing.assert_allclose(kl_divergence(tf.constant(p), tf.constant(p)), 0, atol=1e-6)
    kl = kl_divergence(tf.constant(p), tf.constant(q)).numpy()
    assert kl.shape == (5,) and (kl > 0).all()


def test_trades_examples_stay_in_the_ball_and_move_the_prediction(random_images):
    x, _ = random_images
    model = tiny_smooth_model()
    net, x = logits_model(model), tf.constant(x)
    x_adv = trades_examples(net, x, 0.1, 3, 0.05, tf.random.Generator.from_seed(0))
    assert float(tf.reduce_max(tf.abs(x_adv - x))) <= 0.1 + 1e-6
    assert 0.0 <= float(tf.reduce_min(x_adv)) and float(tf.reduce_max(x_adv)) <= 1.0
    moved = kl_divergence(net(x), net(x_adv))
    noise = kl_divergence(net(x), net(tf.clip_by_value(x + 0.001, 0, 1)))
    assert float(tf.reduce_mean(moved)) > 10 * float(tf.reduce_mean(noise))


def test_trades_loss_with_beta_zero_is_the_clean_cross_entropy(random_images):
    x, y = random_images
    model = tiny_smooth_model()
    net, x = logits_model(model), tf.constant(x)
    y1 = tf.one_hot(y, 10)
    clean = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(y1, net(x, training=True)))
    loss, _, _ = training_loss(
        net, x, tf.clip_by_value(x + 0.1, 0, 1), y1, Defense("trades", beta=0.0)
    )
    np.testing.assert_allclose(float(loss), float(clean), rtol=1e-5)
    more, _, _ = training_loss(
        net, x, tf.clip_by_value(x + 0.1, 0, 1), y1, Defense("trades", beta=6.0)
    )
    assert float(more) > float(loss)


def test_ibp_schedule_ramps_eps_up_and_the_clean_weight_down():
    defense = Defense("ibp", eps=0.2, ramp=0.5)
    for progress, eps, kappa in (
        (0.0, 0.0, 1.0),
        (0.25, 0.1, 0.75),
        (0.5, 0.2, 0.5),
        (0.9, 0.2, 0.5),
    ):
        got = [float(v) for v in ibp_schedule(defense, tf.constant(progress))]
        np.testing.assert_allclose(got, [eps, kappa], atol=1e-6)


def test_ibp_loss_at_eps_zero_is_the_clean_cross_entropy(random_images):
    """With an empty box the worst case is the image itself: both terms are the same."""
    x, y = random_images
    model = build_cnn(dropout=False)
    y_onehot = tf.one_hot(y, 10)
    for kappa in (1.0, 0.5):
        loss, logits, _ = ibp_loss(model, tf.constant(x), y_onehot, tf.constant(0.0), kappa)
        clean = tf.nn.softmax_cross_entropy_with_logits(labels=y_onehot, logits=logits)
        np.testing.assert_allclose(float(loss), float(tf.reduce_mean(clean)), rtol=1e-5)


def test_ibp_training_makes_the_model_provably_robust(small_mnist):
    """A few epochs of IBP training certify a third or more of the digits at ε = 0.05, where
    standard training of the same length certifies almost none."""
    d = small_mnist
    certified = {}
    for kind in ("none", "ibp"):
        set_seed(0)
        model = build_cnn(dropout=False)
        history = train_model(
            model, d.x_train, d.y_train, epochs=4, batch_size=32, progress=False,
            defense=Defense(kind, eps=0.1, ramp=0.5), lr_schedule="cosine",
            validation_data=(d.x_val, d.y_val), monitor=Monitor(eps=0.05, certified=True),
        )  # fmt: skip
        assert len(history["val_certified_accuracy"]) == 4
        certified[kind] = certify.certified_accuracy(model, d.x_test, d.y_test, 0.05)
    assert certified["ibp"] > 0.3 > 0.05 > certified["none"], certified


def test_eps_ramps_up_linearly_then_stays():
    ramped = Defense("pgd", eps=0.3, steps=5, ramp=0.3)
    for progress, eps in ((0.0, 0.0), (0.15, 0.15), (0.3, 0.3), (0.9, 0.3)):
        assert float(eps_at(ramped, tf.constant(progress))) == pytest.approx(eps, abs=1e-6)
    assert float(eps_at(Defense("pgd", eps=0.3, steps=5), tf.constant(0.0))) == pytest.approx(0.3)


def test_ramped_training_attacks_with_the_ramped_budget(random_images, monkeypatch):
    """The first step of a ramped run attacks at ε = 0; without the ramp, at the full ε."""
    x, y = random_images
    original = attacks.pgd_step

    def spy(model, x0, x_adv, y_onehot, eps, step_size, direction=1.0):
        tf.debugging.assert_less_equal(tf.cast(eps, tf.float32), 1e-6, "ε must start at 0")
        return original(model, x0, x_adv, y_onehot, eps, step_size, direction)

    monkeypatch.setattr("helpers.training.pgd_step", spy)
    kwargs = {"epochs": 1, "batch_size": len(x), "progress": False}  # one step, progress 0
    defense = Defense("pgd", eps=0.3, steps=1, adv_fraction=1.0, ramp=1.0)
    train_model(build_cnn(), x, y, defense=defense, **kwargs)
    with pytest.raises(tf.errors.InvalidArgumentError, match="must start at 0"):
        train_model(build_cnn(), x, y, defense=defense._replace(ramp=0.0), **kwargs)


def test_average_decay_starts_small_and_reaches_the_setting():
    assert float(average_decay(0.999, tf.constant(0.0))) == pytest.approx(0.1)
    assert float(average_decay(0.999, tf.constant(1e6))) == pytest.approx(0.999)


def test_weight_average_keeps_the_average_and_the_monitor_measures_it(small_mnist):
    d = small_mnist
    kept = []
    for average in (0.0, 0.9):
        set_seed(0)
        model = build_cnn()
        history = train_model(
            model, d.x_train[:600], d.y_train[:600], epochs=2, progress=False, seed=0,
            validation_data=(d.x_val, d.y_val), weight_average=average,
        )  # fmt: skip
        # the model holds what the monitor measured after the last epoch
        assert accuracy(model, d.x_val, d.y_val) == pytest.approx(history["val_accuracy"][-1])
        kept.append(model.get_weights())
    # the same run, the same last weights: the average differs from them, and from the start
    assert not all(np.allclose(a, b) for a, b in zip(*kept, strict=True))
