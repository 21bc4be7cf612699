"""Training BNext: config -> data -> Distiller -> fit -> artifacts.

A whole run from Python is :func:`run` of a :class:`RunConfig` (what
``python -m larq_bnext.train`` does with its flags); it returns a :class:`RunResult`
(``result.student.top1``, ``result.student.best_weights``, ...; the examples of
:mod:`larq_bnext.training.runner` run one).

* :mod:`~larq_bnext.training.config`, :mod:`~larq_bnext.training.recipe`,
  :mod:`~larq_bnext.training.builders` and :mod:`~larq_bnext.training.runner`: the run, its
  settings and their defaults;
* :mod:`~larq_bnext.training.data`: the input (its augmentation is :mod:`larq_bnext.augment`'s
  layers);
* :mod:`~larq_bnext.training.teachers` and :mod:`~larq_bnext.training.distiller`: the
  distillation loss and the Keras model that trains with it;
* :mod:`~larq_bnext.training.optimizer`, :mod:`~larq_bnext.training.schedules`,
  :mod:`~larq_bnext.training.callbacks`: the recipe;
* :mod:`~larq_bnext.training.batchnorm_stats`: BatchNorm statistics re-estimated for
  validation (the digits demo);
* :mod:`~larq_bnext.training.distribute`, :mod:`~larq_bnext.training.sync_batchnorm`,
  :mod:`~larq_bnext.training.checkpoints`: scaling out and surviving restarts;
* :mod:`~larq_bnext.training.reporting`: one log line per epoch off a terminal, the curves
  picture, the per-class accuracy table.

Examples:
    >>> from larq_bnext.training import RunConfig, run
    >>> config = RunConfig(model="custom", dataset="digits", epochs=1, output_dir="/tmp/run")
    >>> config.epochs, config.batch_size is None  # None: the dataset's default, at run time
    (1, True)
"""

from larq_bnext.training.callbacks import (
    AssistantCurriculum,
    LearningRateLogger,
    StudentCheckpoint,
    TemperatureScheduler,
    anneal_temperatures,
)
from larq_bnext.training.checks import ConfigError
from larq_bnext.training.config import RunConfig
from larq_bnext.training.distiller import Distiller, curriculum_phase, distillation_loss
from larq_bnext.training.optimizer import AdamW, is_conv_kernel
from larq_bnext.training.results import ModelResult, RunResult
from larq_bnext.training.runner import run
from larq_bnext.training.schedules import WarmupCosine, current_learning_rate
from larq_bnext.training.teachers import Teacher, default_teachers, imagenet_teacher
