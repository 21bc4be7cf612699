"""The command-line programs start quietly: TensorFlow's known start-up notices and TensorFlow
Addons' end-of-life warning are left out unless asked for, and nothing else is hidden; importing
the library changes neither the environment nor file descriptor 2."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STARTUP = os.path.join(ROOT, "larq_bnext", "startup.py")


def _run(code_or_args, env_extra=None, cwd=None):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",)}
    env.pop("LARQ_BNEXT_STARTUP_LOGS", None)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    args = code_or_args if isinstance(code_or_args, list) else ["-c", code_or_args]
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def _startup_module():
    spec = importlib.util.spec_from_file_location("startup_under_test", STARTUP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_help_has_no_startup_notices_unless_asked_for():
    startup = _startup_module()
    # What a plain `import tensorflow` writes on this machine, recognised as known notices.
    plain = _run("import tensorflow").stderr.splitlines()
    known = [line for line in plain if startup.is_startup_noise(line)]
    quiet = _run(["-m", "larq_bnext.predict", "--help"])
    assert "--model" in quiet.stdout, quiet.stderr  # absl's --help exits with status 1
    assert [line for line in quiet.stderr.splitlines() if startup.is_startup_noise(line)] == []
    assert "Unable to register" not in quiet.stderr
    for opt_in in ({"LARQ_BNEXT_STARTUP_LOGS": "1"}, None):
        args = ["-m", "larq_bnext.predict", "--help"]
        if opt_in is None:
            args.append("--verbosity=1")
        shown = _run(args, env_extra=opt_in)
        assert "--model" in shown.stdout, shown.stderr
        noisy = [line for line in shown.stderr.splitlines() if startup.is_startup_noise(line)]
        # The same notices as the plain import (their timestamps aside).
        assert len(noisy) == len(known)


def test_other_lines_written_during_the_import_still_reach_stderr(tmp_path):
    # A stand-in `tensorflow` that writes a known notice, a real warning and an error to
    # file descriptor 2, as TensorFlow's C++ logging does.
    fake = tmp_path / "tensorflow"
    fake.mkdir()
    (fake / "__init__.py").write_text(
        textwrap.dedent(
            """
            import os, warnings
            os.write(2, b"E cuda_dnn.cc:1] Unable to register cuDNN factory: Attempting to "
                        b"register factory for plugin cuDNN\\n")
            os.write(2, b"W op_kernel.cc:1] a real warning\\n")
            warnings.warn("a Python warning")
            """
        )
    )
    code = textwrap.dedent(
        f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("s", {STARTUP!r})
        s = importlib.util.module_from_spec(spec); spec.loader.exec_module(s)
        tf = s.import_tensorflow_quietly()
        print(tf.__file__)
        """
    )
    result = _run(code, env_extra={"PYTHONPATH": str(tmp_path)}, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert str(fake) in result.stdout
    assert "Unable to register" not in result.stderr
    assert "W op_kernel.cc:1] a real warning" in result.stderr
    assert "a Python warning" in result.stderr
    shown = _run(code, env_extra={"PYTHONPATH": str(tmp_path), "LARQ_BNEXT_STARTUP_LOGS": "1"})
    assert "Unable to register cuDNN factory" in shown.stderr


def test_addons_end_of_life_warning_is_left_out_unless_asked_for():
    code = textwrap.dedent(
        """
        import warnings
        warnings.simplefilter("always")
        import tensorflow as tf
        from larq_bnext.augment.randaugment_ops import rotate
        print(rotate(tf.zeros([1, 4, 4, 3]), tf.constant([30.0])).shape)
        """
    )
    quiet = _run(code)
    assert quiet.returncode == 0, quiet.stderr
    assert "(1, 4, 4, 3)" in quiet.stdout
    assert "TensorFlow Addons (TFA) has ended development" not in quiet.stderr
    shown = _run(code, env_extra={"LARQ_BNEXT_STARTUP_LOGS": "1"})
    assert "TensorFlow Addons (TFA) has ended development" in shown.stderr


def test_startup_logs_requested_reads_the_verbosity_flag_and_the_variable():
    startup = _startup_module()
    assert startup.startup_logs_requested(["p", "--verbosity", "2"], {})
    assert startup.startup_logs_requested(["p", "-v=1"], {})
    assert not startup.startup_logs_requested(["p", "--verbosity=0", "--model", "T"], {})
    assert not startup.startup_logs_requested(["p", "--verbosity=-1"], {})
    assert startup.startup_logs_requested(["p"], {"LARQ_BNEXT_STARTUP_LOGS": "1"})
    assert not startup.startup_logs_requested(["p"], {"LARQ_BNEXT_STARTUP_LOGS": ""})


#: Code that runs as ``python -m larq_bnext.<program>`` does at the package's import: Python
#: sets sys.argv[0] to "-m" while it imports the program's package (checked below).
AS_PROGRAM = "import sys; sys.argv[0] = '-m'\n"


def test_python_m_imports_the_package_with_argv0_dash_m(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("import sys; print('package', sys.argv[0])\n")
    (package / "prog.py").write_text("import sys; print('program', sys.argv[0])\n")
    result = _run(["-m", "pkg.prog"], cwd=str(tmp_path))
    lines = result.stdout.splitlines()
    assert lines[0] == "package -m", result.stderr
    assert lines[1] == f"program {package / 'prog.py'}"
    startup = _startup_module()
    assert startup.started_as_program(["-m", "--model", "T"])
    assert not startup.started_as_program(["/usr/bin/pytest", "-m", "compat"])


def test_importing_the_library_changes_no_environment_and_leaves_fd2_alone():
    # What importing larq_bnext changes in os.environ, next to what `import tensorflow` alone
    # changes (TensorFlow 2.15 sets TF2_BEHAVIOR and TPU_ML_PLATFORM itself); and every
    # os.dup/os.dup2 call made during the import.
    probe = textwrap.dedent(
        """
        import json, os, sys
        calls = []
        for name in ("dup", "dup2"):
            real = getattr(os, name)
            setattr(os, name, lambda *a, _real=real, _name=name: calls.append([_name, *a]) or
                    _real(*a))
        before = dict(os.environ)
        import {module}
        changed = sorted(k for k in set(before) | set(os.environ)
                         if before.get(k) != os.environ.get(k))
        print(json.dumps({{"changed": changed, "calls": calls}}))
        """
    )
    plain = _run(probe.format(module="tensorflow"))
    library = _run(probe.format(module="larq_bnext"))
    assert library.returncode == 0, library.stderr
    got = json.loads(library.stdout.splitlines()[-1])
    expected = json.loads(plain.stdout.splitlines()[-1])
    assert got["changed"] == expected["changed"]
    assert "TF_CPP_MIN_LOG_LEVEL" not in got["changed"]
    assert "TF_USE_LEGACY_KERAS" not in got["changed"]  # TensorFlow 2.15 needs no switch
    assert [c for c in got["calls"] if 2 in c[1:]] == []
    # TensorFlow's own notices reach stderr as they do for a plain import.
    startup = _startup_module()
    noise = [line for line in plain.stderr.splitlines() if startup.is_startup_noise(line)]
    assert noise, plain.stderr  # this stack writes some
    assert len([ln for ln in library.stderr.splitlines() if startup.is_startup_noise(ln)]) == len(
        noise
    )


def test_tensorflow_info_lines_are_left_out_after_a_program_start_unless_asked_for():
    # The threshold a program's start sets when the user has not, kept when the user has, and
    # left alone when the logs are asked for; a plain import sets none.
    show = "import os, larq_bnext; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))"
    assert _run(show).stdout.split()[-1] == "None"
    assert _run(AS_PROGRAM + show).stdout.split()[-1] == "1"
    assert (
        _run(AS_PROGRAM + show, env_extra={"TF_CPP_MIN_LOG_LEVEL": "0"}).stdout.split()[-1] == "0"
    )
    asked = _run(AS_PROGRAM + show, env_extra={"LARQ_BNEXT_STARTUP_LOGS": "1"})
    assert asked.stdout.split()[-1] == "None"
    # Its effect on real INFO lines that TensorFlow's C++ runtime writes after the start: with
    # device placement logged, the eager executor writes "Executing op AddV2 ..." at INFO.
    place = (
        "import larq_bnext, tensorflow as tf\n"
        "tf.debugging.set_log_device_placement(True)\n"
        "print(float(tf.constant(1.0) + 1.0))\n"
    )
    quiet = _run(AS_PROGRAM + place)
    assert quiet.stdout.split()[-1] == "2.0", quiet.stderr
    assert "Executing op AddV2" not in quiet.stderr
    shown = _run(AS_PROGRAM + place, env_extra={"TF_CPP_MIN_LOG_LEVEL": "0"})
    assert "Executing op AddV2" in shown.stderr, shown.stderr
