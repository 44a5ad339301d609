"""The course library of mnist-adversarial-defense: what the notebooks import and students read.

Modules, in the order the course uses them:

- :mod:`helpers.paths` -- where data, artifacts and results live
- :mod:`helpers.data` -- verified offline MNIST loading, preprocessing, label checks
- :mod:`helpers.model` -- the CNN, its logits, and batched predictions
- :mod:`helpers.attacks` -- **FGSM and PGD, written as the algorithm**: ``fgsm`` (one signed
  step of ``loss_gradient``), ``pgd`` (a loop of ``pgd_step`` over steps and restarts),
  ``pgd_effort`` (how PGD's success grows with its effort); the course's settings ``EPS``,
  ``PGD_STEPS`` and ``PGD_REL_STEP``
- :mod:`helpers.engine` -- the speed layer beneath the attacks: compile once per model, run in
  batches (a reader can skip it; it changes no number)
- :mod:`helpers.training` -- seeding, and one training loop (``train_model``) whose
  ``Defense`` makes batches adversarial and whose ``Monitor`` watches validation robustness
- :mod:`helpers.evaluation` -- accuracy, accuracy under attack, worst case, confusion matrices
- :mod:`helpers.robustness` -- the honest evaluation: robustness curves, PGD convergence, the
  sanity checks of Carlini et al. 2019, and their tables
- :mod:`helpers.autoattack` -- the field's standard evaluation: APGD-CE, APGD-T and Square
- :mod:`helpers.certify` -- proofs instead of attacks: interval bound propagation and
  certified accuracy, the lower bound beneath every attack (notebook 07)
- :mod:`helpers.registry` -- the course's models in one table: label, notebook, recipe;
  ``train_recipe`` trains one
- :mod:`helpers.artifacts` -- saving and loading models (``.keras``), metrics (JSON), figures
- :mod:`helpers.plots` -- the figures the notebooks show
- :mod:`helpers.explorer` -- the interactive ε explorer widget
- :mod:`helpers.show` -- showing the library's own code in a notebook

The project's tooling -- :mod:`tooling` (reproduction, the series runner, the classroom)
and :mod:`benchmarks` -- lives beside this package and imports it, never the other way
round (a test checks).
"""

import os

# Keep TensorFlow's C++ start-up chatter (oneDNN notices) out of notebook outputs.
# Must happen before TensorFlow is first imported; a user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# Big NumPy arrays in ordinary pages. NumPy asks Linux to back every array over 4 MiB
# (a freshly loaded MNIST is one) with 2 MiB "huge" pages; on virtual machines, assembling
# them can cost more system time than the computing on them saves. Set here and in the
# environment, so that kernels and workers started from this process begin that way; a
# user's own NUMPY_MADVISE_HUGEPAGE wins.
if "NUMPY_MADVISE_HUGEPAGE" not in os.environ:
    from numpy._core.multiarray import _set_madvise_hugepage

    os.environ["NUMPY_MADVISE_HUGEPAGE"] = "0"
    _set_madvise_hugepage(False)

__version__ = "0.1.0"
