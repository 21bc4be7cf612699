"""Training BNext: config -> data -> Distiller -> fit -> artifacts.

A whole run from Python is :func:`run` of a :class:`RunConfig` (what
``python -m larq_bnext.train`` does with its flags); it returns a :class:`RunResult`
(``result.student.top1``, ``result.student.best_weights``, ...; the examples of
:mod:`larq_bnext.training.runner` run one).

The run, its settings and their defaults:

* :mod:`~larq_bnext.training.config`: :class:`RunConfig`, every setting of a run;
* :mod:`~larq_bnext.training.checks`: what makes a config unable to work (when it is made,
  and its paths when the run starts);
* :mod:`~larq_bnext.training.recipe`: the defaults of the dataset and of the model's recipe;
* :mod:`~larq_bnext.training.builders`: data, models, teachers, optimizer and callbacks of a
  config;
* :mod:`~larq_bnext.training.runner`: :func:`run`, the whole run;
* :mod:`~larq_bnext.training.results`: what a run returns and writes (``metrics.json``);
* :mod:`~larq_bnext.training.reporting`: one log line per epoch off a terminal, the curves
  picture, the per-class accuracy table.

Three folders hold the rest (each package docstring lists its modules):

* :mod:`larq_bnext.training.data`: the data side: datasets (digits, image folders, TFDS),
  the ``tf.data`` pipelines, label fractions and noise, unreadable files, a synthetic
  ImageNet tree for smoke runs; its augmentation is :mod:`larq_bnext.augment`'s keras-cv
  layers;
* :mod:`larq_bnext.training.method`: BNext's method: teachers, the distillation loss and
  the :class:`Distiller`, AdamW, the learning-rate schedule, the per-epoch callbacks, the
  re-estimated BatchNorm statistics;
* :mod:`larq_bnext.training.runtime`: the machinery of long runs: distribution strategies,
  synchronised BatchNorm, the teachers' precision, checkpoints that survive a kill.

Examples:
    >>> from larq_bnext.training import RunConfig, run
    >>> config = RunConfig(model="custom", dataset="digits", epochs=1, output_dir="/tmp/run")
    >>> config.epochs, config.batch_size is None  # None: the dataset's default, at run time
    (1, True)
"""

from larq_bnext.training.checks import ConfigError
from larq_bnext.training.config import RunConfig
from larq_bnext.training.method.callbacks import (
    AssistantCurriculum,
    LearningRateLogger,
    StudentCheckpoint,
    TemperatureScheduler,
    anneal_temperatures,
)
from larq_bnext.training.method.distiller import Distiller, curriculum_phase, distillation_loss
from larq_bnext.training.method.optimizer import AdamW, is_conv_kernel
from larq_bnext.training.method.schedules import WarmupCosine, current_learning_rate
from larq_bnext.training.method.teachers import Teacher, default_teachers, imagenet_teacher
from larq_bnext.training.results import ModelResult, RunResult
from larq_bnext.training.runner import run
