import numpy as np
import pytest

from helpers import attacks, evaluation


def test_eps_key_formats_budgets():
    assert [evaluation.eps_key(e) for e in (0, 0.1, 0.25, 0.30000000000000004)] == [
        "0",
        "0.1",
        "0.25",
        "0.3",
    ]
    with pytest.raises(ValueError):
        evaluation.eps_key(-1)


def test_fgsm_curve_matches_attacking_each_budget(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:200], small_mnist.y_test[:200]
    curve = evaluation.fgsm_accuracy_curve(trained_cnn, x, y, [0.0, 0.1, 0.25])
    assert curve["0"] == evaluation.accuracy(trained_cnn, x, y)
    for eps in (0.1, 0.25):
        direct = evaluation.accuracy(trained_cnn, attacks.fgsm(trained_cnn, x, y, eps), y)
        assert curve[evaluation.eps_key(eps)] == pytest.approx(direct)
    assert curve["0.25"] < curve["0.1"] < curve["0"]


def test_pgd_curve_is_below_fgsm(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:100], small_mnist.y_test[:100]
    pgd = evaluation.pgd_accuracy_curve(trained_cnn, x, y, [0.1], steps=10, rel_step=0.2)
    fgsm = evaluation.fgsm_accuracy_curve(trained_cnn, x, y, [0.1])
    assert pgd["0.1"] <= fgsm["0.1"]


def test_confusion_matrix_counts_every_example():
    cm = evaluation.confusion_matrix(np.array([0, 1, 1, 9]), np.array([0, 1, 7, 9]))
    assert cm.shape == (10, 10) and cm.sum() == 4 and cm[1, 7] == 1 and np.trace(cm) == 3


def test_accuracy_checks_lengths(trained_cnn, small_mnist):
    with pytest.raises(ValueError, match="labels"):
        evaluation.accuracy(trained_cnn, small_mnist.x_test[:5], small_mnist.y_test[:4])


def test_worst_case_is_never_above_any_single_attack(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:200], small_mnist.y_test[:200]
    adversarial = {
        "fgsm": attacks.fgsm(trained_cnn, x, y, 0.1),
        "pgd": attacks.pgd(trained_cnn, x, y, 0.1, steps=5, rel_step=0.3),
    }
    result = evaluation.worst_case_accuracy(trained_cnn, x, y, adversarial)
    assert result["worst_case"] <= min(result["fgsm"], result["pgd"])
    assert set(result) == {"fgsm", "pgd", "worst_case"}
    with pytest.raises(ValueError, match="adversarial images"):
        evaluation.worst_case_accuracy(trained_cnn, x, y, {"bad": x[:5]})


def test_noise_is_far_weaker_than_pgd(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:200], small_mnist.y_test[:200]
    white_box = evaluation.accuracy(
        trained_cnn, attacks.pgd(trained_cnn, x, y, 0.2, steps=10, rel_step=0.25), y
    )
    noise = evaluation.accuracy(trained_cnn, attacks.random_sign_noise(x, 0.2), y)
    assert noise > white_box + 0.3


def test_bad_inputs_to_the_measurements_are_refused(trained_cnn, small_mnist):
    with pytest.raises(ValueError, match="no images"):
        evaluation.accuracy(trained_cnn, small_mnist.x_test[:0], small_mnist.y_test[:0])
    with pytest.raises(ValueError, match=r"0\.\.9"):
        evaluation.confusion_matrix(np.array([1, 12]), np.array([1, 2]))


def test_logit_scale_changes_saturation_but_not_the_margin_attack(trained_cnn, small_mnist):
    x, y = small_mnist.x_test[:100], small_mnist.y_test[:100]
    result = evaluation.logit_scale_experiment(trained_cnn, x, y, 0.1, [1, 50])
    assert set(result) == {
        "saturated share",
        *(f"FGSM accuracy, {v}" for v in evaluation.SCALE_LOSSES.values()),
    }
    assert result["saturated share"][1] > result["saturated share"][0]
    margin = result["FGSM accuracy, logit margin"]
    assert margin[0] == margin[1]
