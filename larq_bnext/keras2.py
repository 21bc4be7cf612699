"""Keras 2 on every supported TensorFlow (2.15 to 2.17), and the error when it is not there.

Larq is written for Keras 2. TensorFlow 2.15's ``tf.keras`` is Keras 2; from TensorFlow 2.16 on
``tf.keras`` is Keras 3 unless ``TF_USE_LEGACY_KERAS=1`` is set *before TensorFlow is imported*,
in which case it is Keras 2 from the ``tf_keras`` package (``pip install tf-keras``).

This is the one place where importing ``larq_bnext`` changes global state:
:func:`select_keras2` sets ``TF_USE_LEGACY_KERAS=1`` in ``os.environ`` (child processes inherit
it), and only when all of these hold: TensorFlow is not imported yet, the variable is not set,
and the installed ``keras`` distribution is Keras 3 (TensorFlow 2.16 or later). Everywhere else
(TensorFlow 2.15, or a user who set the variable) nothing is changed.

:func:`check_keras2` runs right after TensorFlow's import: when ``tf.keras`` is not Keras 2
(TensorFlow imported first, ``TF_USE_LEGACY_KERAS=0``, or ``tf_keras`` missing) it raises
:class:`Keras2Error`, whose message names the fix. :func:`keras_src` imports a private Keras 2
module (``<package>.src.<name>``) from the package that ``tf.keras`` really is: ``keras`` on
TensorFlow 2.15, ``tf_keras`` from 2.16 on. :func:`set_random_seed` is
``tf.keras.utils.set_random_seed`` that also works on Python 3.12.

Example:

>>> select_keras2(environ={}, modules={"tensorflow": object()})  # TensorFlow already imported
False
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import random
import sys

__all__ = [
    "LEGACY_KERAS_VARIABLE",
    "Keras2Error",
    "keras3_installed",
    "select_keras2",
    "keras2_problem",
    "check_keras2",
    "keras_package",
    "keras_src",
    "set_random_seed",
]

#: TensorFlow's switch (2.16 and later) from Keras 3 to Keras 2 (the ``tf_keras`` package).
LEGACY_KERAS_VARIABLE = "TF_USE_LEGACY_KERAS"


class Keras2Error(ImportError):
    """``tf.keras`` is not Keras 2: the message says why and how to fix it."""


def keras3_installed() -> bool:
    """Whether the installed ``keras`` distribution is Keras 3 (read without importing it)."""
    try:
        version = importlib.metadata.version("keras")
    except importlib.metadata.PackageNotFoundError:
        return False
    return version.split(".")[0].isdigit() and int(version.split(".")[0]) >= 3


def select_keras2(environ=None, modules=None) -> bool:
    """Set ``TF_USE_LEGACY_KERAS=1`` where it is needed and still takes effect (see the module).

    Args:
        environ: the environment to change (default ``os.environ``).
        modules: the imported modules (default ``sys.modules``).

    Returns:
        Whether the variable was set.
    """
    environ = os.environ if environ is None else environ
    modules = sys.modules if modules is None else modules
    if "tensorflow" in modules or LEGACY_KERAS_VARIABLE in environ or not keras3_installed():
        return False
    environ[LEGACY_KERAS_VARIABLE] = "1"
    return True


def _fix(tf_version: str) -> str:
    major_minor = ".".join(tf_version.split(".")[:2])
    return (
        f'Fix: pip install "tf-keras~={major_minor}.0" and set {LEGACY_KERAS_VARIABLE}=1 before '
        "TensorFlow is imported: export it in the shell, or import larq_bnext before tensorflow "
        f"and larq (it sets the variable when it is unset), or run "
        f'os.environ["{LEGACY_KERAS_VARIABLE}"] = "1" first thing. TensorFlow 2.15 needs no '
        "switch. See docs/install.md."
    )


def keras2_problem(keras_version: str | None, tf_version: str, environ=None) -> str | None:
    """The error message for a ``tf.keras`` of ``keras_version`` (None: it cannot be imported),
    or None when it is Keras 2.

    Args:
        keras_version: the version of the Keras package behind ``tf.keras``, or None when
            ``tf.keras`` fails to import.
        tf_version: ``tf.__version__``.
        environ: the environment (default ``os.environ``).

    Example:

    >>> keras2_problem("2.17.0", "2.17.1") is None
    True
    >>> print(keras2_problem("3.5.0", "2.17.1", environ={}).splitlines()[0])
    larq_bnext needs Keras 2, but tf.keras is Keras 3.5.0 (TensorFlow 2.17.1).
    """
    environ = os.environ if environ is None else environ
    if keras_version is not None and keras_version.startswith("2."):
        return None
    setting = environ.get(LEGACY_KERAS_VARIABLE)
    if keras_version is None:
        what = "tf.keras cannot be imported"
        why = "the tf_keras package (Keras 2 for TensorFlow 2.16 and later) is probably missing"
    else:
        what = f"tf.keras is Keras {keras_version}"
        why = (
            f"{LEGACY_KERAS_VARIABLE} is set to {setting!r}"
            if setting is not None
            else f"TensorFlow was imported before larq_bnext without {LEGACY_KERAS_VARIABLE}=1"
        )
    return f"larq_bnext needs Keras 2, but {what} (TensorFlow {tf_version}).\nWhy: {why}.\n" + _fix(
        tf_version
    )


def check_keras2(tf) -> None:
    """Raise :class:`Keras2Error` unless ``tf.keras`` is Keras 2.

    Args:
        tf: the ``tensorflow`` module.
    """
    try:
        package = tf.keras.layers.Layer.__module__.split(".")[0]  # keras or tf_keras
    except ImportError:
        version = None
    else:
        version = str(importlib.import_module(package).__version__)
    problem = keras2_problem(version, tf.__version__)
    if problem:
        raise Keras2Error(problem)


def keras_package() -> str:
    """The Keras 2 package behind ``tf.keras``: ``"keras"`` (TF 2.15) or ``"tf_keras"``."""
    import tensorflow as tf

    return tf.keras.layers.Layer.__module__.split(".")[0]


def keras_src(name: str):
    """Import the private Keras 2 module ``<package>.src.<name>`` of :func:`keras_package`.

    Args:
        name: the dotted module path under ``src``, e.g. ``"distribute.worker_training_state"``.
    """
    return importlib.import_module(f"{keras_package()}.src.{name}")


class _IntegralRandom(random.Random):
    """``random.Random`` whose ``randint`` takes whole floats, as Python 3.11's did."""

    def randint(self, a, b):
        return super().randint(int(a), int(b))


def set_random_seed(seed: int) -> None:
    """``tf.keras.utils.set_random_seed(seed)`` (Python's, NumPy's and TensorFlow's seeds), on
    Python 3.12 too.

    Keras 2 (``tf_keras`` 2.16 and 2.17) draws the seed of every unseeded initializer with
    ``randint(1, 1e9)`` from the generator ``set_random_seed`` installs; Python 3.12 refuses the
    float bound (``TypeError: 'float' object cannot be interpreted as an integer``), so building
    any model after ``tf.keras.utils.set_random_seed`` fails there. The generator is replaced by
    one that takes whole floats: the same draws as on Python 3.10 and 3.11.

    Args:
        seed: the seed.
    """
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    keras_src("backend")._SEED_GENERATOR.generator = _IntegralRandom(seed)
