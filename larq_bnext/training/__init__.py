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

The data side:

* :mod:`~larq_bnext.training.data`: datasets (digits, image folders, TFDS) and their streams;
* :mod:`~larq_bnext.training.pipelines`: the ``tf.data`` training and evaluation pipelines;
* :mod:`~larq_bnext.training.labels`: label fractions and label noise (ablations);
* :mod:`~larq_bnext.training.skipped`: unreadable images, skipped, counted and listed;
* :mod:`~larq_bnext.training.synthetic_imagenet`: a fake ImageNet folder tree for smoke runs;

The training augmentation is :mod:`larq_bnext.augment`'s keras-cv layers.

The method:

* :mod:`~larq_bnext.training.teachers` and :mod:`~larq_bnext.training.distiller`: the
  teachers, the distillation loss and the Keras model that trains with it;
* :mod:`~larq_bnext.training.optimizer`, :mod:`~larq_bnext.training.schedules`,
  :mod:`~larq_bnext.training.callbacks`: AdamW, the learning-rate schedule, the per-epoch
  temperature anneal, curriculum and checkpoints;
* :mod:`~larq_bnext.training.batchnorm_stats`: BatchNorm statistics re-estimated for
  validation (the digits demo).

The machinery of long runs:

* :mod:`~larq_bnext.training.distribute`, :mod:`~larq_bnext.training.sync_batchnorm`:
  scaling out over devices and workers;
* :mod:`~larq_bnext.training.precision`: the teachers' precision policy;
* :mod:`~larq_bnext.training.checkpoints`: backups that survive a kill, and resuming.

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
