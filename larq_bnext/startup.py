"""A quiet start for the command-line programs: TensorFlow's known start-up notices are left
out unless asked for. Importing the library changes nothing here.

Only a program starts quietly: :func:`program_start` runs when Python runs a module of the
package as a program (``python -m larq_bnext.predict``, ``.train``, ``.evaluate``, ...; see
:func:`started_as_program`), at the package's import, which Python makes before the program's
first line and so before TensorFlow's import. ``import larq_bnext`` in a script, a notebook or
a test leaves file descriptor 2 and the environment alone (TensorFlow then writes its notices
as it always does); such a user may call :func:`import_tensorflow_quietly` first.

Importing TensorFlow 2.15 writes, from C++ straight to file descriptor 2, lines that are no
problem of the user's: the "Unable to register cuDNN/cuFFT/cuBLAS factory" errors (a known
TensorFlow 2.15 packaging bug, printed even on machines without a GPU), "TF-TRT Warning: Could
not find TensorRT" (TensorRT is optional), "Could not find cuda drivers on your machine" (a
CPU-only machine) and the oneDNN and CPU-instruction notices. TensorFlow Addons, used by the
RandAugment affine ops, warns on import that it has reached its end of life.

:func:`import_tensorflow_quietly` imports TensorFlow with file descriptor 2 sent to a
temporary file, then writes back everything except the lines :func:`is_startup_noise`
recognises: any other message (a real warning, an error) still reaches stderr, in order.
:func:`quiet_addons_import` does the same for TensorFlow Addons' end-of-life warning only.
Both do nothing when TensorFlow is already imported, and everything is shown when
:func:`startup_logs_requested`: ``--verbosity=1`` (absl's flag, ``-v 1``) or more on the
command line, or the environment variable ``LARQ_BNEXT_STARTUP_LOGS=1``.

After the start, TensorFlow's C++ INFO lines are left out too: unless the user has set
``TF_CPP_MIN_LOG_LEVEL`` (or asked for the logs as above), :func:`import_tensorflow_quietly`
sets it to ``1`` before the import, so that lines such as tf.data's "Running replicate on
split optimization" (several per epoch of a training run) do not bury the program's output;
warnings (level 1) and errors (level 2) are still written. ``TF_CPP_MIN_LOG_LEVEL=0`` shows
INFO lines again. The variable is read by TensorFlow once, at its first log line, which is why
it is set before the import; child processes inherit it.

Examples:
    >>> is_startup_noise("E cuda_dnn.cc:9261] Unable to register cuDNN factory: "
    ...                  "Attempting to register factory for plugin cuDNN when one has already")
    True
    >>> is_startup_noise("W tensorflow/core/framework/op_kernel.cc: OP_REQUIRES failed")
    False
    >>> startup_logs_requested(["train", "--verbosity=1"], {})
    True
    >>> startup_logs_requested(["train", "-v", "0"], {"LARQ_BNEXT_STARTUP_LOGS": "0"})
    False
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import warnings

__all__ = [
    "STARTUP_LOGS_VARIABLE",
    "TF_LOG_LEVEL_VARIABLE",
    "QUIET_TF_LOG_LEVEL",
    "is_startup_noise",
    "startup_logs_requested",
    "import_tensorflow_quietly",
    "quiet_addons_import",
    "started_as_program",
    "program_start",
]

#: Set to 1 to see TensorFlow's start-up notices and TensorFlow Addons' end-of-life warning.
STARTUP_LOGS_VARIABLE = "LARQ_BNEXT_STARTUP_LOGS"

#: TensorFlow's C++ log threshold (0 INFO, 1 WARNING, 2 ERROR), read once by TensorFlow.
TF_LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
#: The threshold a quiet start sets when the user has not: INFO lines left out.
QUIET_TF_LOG_LEVEL = "1"

_NOISE = re.compile(
    "|".join(
        (
            r"Unable to register cu(DNN|FFT|BLAS) factory: Attempting to register factory",
            r"TF-TRT Warning: Could not find TensorRT",
            r"Could not find cuda drivers on your machine, GPU will not be used",
            r"oneDNN custom operations are on\. You may see slightly different numerical",
            r"This TensorFlow binary is optimized to use available CPU instructions",
            r"^To enable the following instructions: .*rebuild TensorFlow with the appropriate",
        )
    )
)

_EOL_MESSAGE = r"\s*TensorFlow Addons \(TFA\) has ended development"


def is_startup_noise(line: str) -> bool:
    """Whether ``line`` is one of TensorFlow's known start-up notices (see the module).

    Args:
        line: one line written to stderr.
    """
    return bool(_NOISE.search(line))


def startup_logs_requested(argv=None, environ=None) -> bool:
    """Whether the start-up notices are asked for: ``--verbosity`` (or ``-v``) of 1 or more
    among the arguments, or ``LARQ_BNEXT_STARTUP_LOGS=1``.

    Args:
        argv: the command line (default ``sys.argv``).
        environ: the environment (default ``os.environ``).
    """
    argv = sys.argv if argv is None else argv
    environ = os.environ if environ is None else environ
    if environ.get(STARTUP_LOGS_VARIABLE, "").strip() not in ("", "0"):
        return True
    args = list(argv[1:])
    for i, arg in enumerate(args):
        value = None
        for name in ("--verbosity", "-verbosity", "-v"):
            if arg.startswith(name + "="):
                value = arg[len(name) + 1 :]
            elif arg == name and i + 1 < len(args):
                value = args[i + 1]
        if value is not None and value.strip().lstrip("-").isdigit() and int(value) >= 1:
            return True
    return False


def _write_kept(text: str) -> None:
    kept = "".join(line for line in text.splitlines(keepends=True) if not is_startup_noise(line))
    if kept:
        sys.stderr.write(kept)
        sys.stderr.flush()


def import_tensorflow_quietly():
    """Import TensorFlow, leaving out its known start-up notices and, unless
    ``TF_CPP_MIN_LOG_LEVEL`` is set, its later C++ INFO lines (see the module).

    Returns:
        The ``tensorflow`` module.
    """
    if "tensorflow" in sys.modules or startup_logs_requested():
        import tensorflow

        return tensorflow
    os.environ.setdefault(TF_LOG_LEVEL_VARIABLE, QUIET_TF_LOG_LEVEL)
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no file descriptor 2 to redirect
        import tensorflow

        return tensorflow
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            _write_kept(captured.read().decode("utf-8", errors="replace"))
    return tensorflow


def started_as_program(argv=None) -> bool:
    """Whether Python is locating a module to run as a program (``python -m``): it sets
    ``sys.argv[0]`` to ``"-m"`` while it imports the module's packages (Python's documentation
    of ``-m``), so the package's import sees it only when one of its modules is the program.

    Args:
        argv: the command line (default ``sys.argv``).
    """
    argv = sys.argv if argv is None else argv
    return bool(argv) and argv[0] == "-m"


def program_start():
    """A program's quiet start (:func:`import_tensorflow_quietly`); the package's import runs
    it for ``python -m larq_bnext.<program>``.

    Returns:
        The ``tensorflow`` module.
    """
    return import_tensorflow_quietly()


@contextlib.contextmanager
def quiet_addons_import():
    """Around ``import tensorflow_addons``: its end-of-life warning is left out (unless
    :func:`startup_logs_requested`); every other warning passes."""
    if startup_logs_requested():
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_EOL_MESSAGE, category=UserWarning)
        yield
