"""Helpers for the mnist-adversarial-defense course.

The notebooks in ``notebooks/`` stay thin and call these modules:

- :mod:`helpers.paths` -- where data, artifacts and results live
- :mod:`helpers.data` -- verified offline MNIST loading and preprocessing
- :mod:`helpers.model` -- the CNN and its logits
- :mod:`helpers.training` -- seeding, standard and adversarial training
- :mod:`helpers.attacks` -- FGSM and PGD (L-infinity)
- :mod:`helpers.evaluation` -- accuracy, accuracy under attack, confusion matrices
- :mod:`helpers.artifacts` -- saving/loading models (``.keras``) and metrics (JSON)
- :mod:`helpers.plots` -- the figures the notebooks show
"""

import os

# Keep TensorFlow's C++ start-up chatter (oneDNN notices) out of notebook outputs.
# Must happen before TensorFlow is first imported; a user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"
