"""The training run's inter-op threads: one op at a time on a CPU by default, settable."""

import os
import subprocess
import sys

import pytest

from larq_bnext.training import ConfigError, RunConfig
from larq_bnext.training.threads import inter_op_threads_for

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _python(code):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()


def test_the_decision():
    assert inter_op_threads_for(None, accelerated=False) == 1
    assert inter_op_threads_for(None, accelerated=True) == 0  # TensorFlow's default
    assert inter_op_threads_for(0, accelerated=False) == 0
    assert inter_op_threads_for(3, accelerated=True) == 3
    with pytest.raises(ValueError, match="inter_op_threads=-1"):
        inter_op_threads_for(-1, accelerated=False)


def test_config_refuses_negative_and_a_count_that_deterministic_overrides(tmp_path):
    with pytest.raises(ConfigError, match="inter_op_threads=-2 must be 0 or more"):
        RunConfig(inter_op_threads=-2, output_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="inter_op_threads=4 cannot hold with deterministic"):
        RunConfig(inter_op_threads=4, deterministic=True, output_dir=str(tmp_path))
    RunConfig(inter_op_threads=1, deterministic=True, output_dir=str(tmp_path))


def test_a_cpu_run_executes_one_op_at_a_time_unless_told_otherwise(tmp_path):
    run = (
        "import tensorflow as tf\n"
        "from larq_bnext.training import RunConfig, run\n"
        "run(RunConfig(model='custom', stage_channels=(8, 16), dataset='digits', epochs=1,\n"
        "    steps_per_epoch=1, teachers='none', deterministic=False, verbose=0,\n"
        "    output_dir={out!r}{extra}))\n"
        "print(tf.config.threading.get_inter_op_parallelism_threads())\n"
    )
    assert _python(run.format(out=str(tmp_path / "auto"), extra="")) == ["1"]
    # 0 keeps TensorFlow's default (0: one thread per core); the setting is applied as given.
    setting = (
        "import tensorflow as tf\n"
        "from larq_bnext.training.threads import set_inter_op_threads\n"
        "print(set_inter_op_threads(0), set_inter_op_threads(3))\n"
        "tf.constant(1.0) + 1.0\n"
        "print(set_inter_op_threads(None))\n"  # too late: stays as it was
    )
    assert _python(setting) == ["0", "3", "3"]
