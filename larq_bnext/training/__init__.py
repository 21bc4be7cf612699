"""Training BNext: flags -> data -> Distiller -> fit -> artifacts.

* :mod:`~larq_bnext.training.data` and :mod:`~larq_bnext.training.augmentation`: the input;
* :mod:`~larq_bnext.training.teachers` and :mod:`~larq_bnext.training.distiller`: the
  distillation loss and the Keras model that trains with it;
* :mod:`~larq_bnext.training.optimizer`, :mod:`~larq_bnext.training.schedules`,
  :mod:`~larq_bnext.training.callbacks`: the recipe;
* :mod:`~larq_bnext.training.distribute`, :mod:`~larq_bnext.training.sync_batchnorm`,
  :mod:`~larq_bnext.training.checkpoints`: scaling out and surviving restarts;
* :mod:`~larq_bnext.training.reporting`: one log line per epoch off a terminal, the curves
  picture, the per-class accuracy table;
* :mod:`~larq_bnext.training.recipe` and :mod:`~larq_bnext.training.run`: the run of
  ``python -m larq_bnext.train``.
"""

from larq_bnext.training.augmentation import AugmentConfig, BatchAugmenter
from larq_bnext.training.callbacks import (
    AssistantCurriculum,
    LearningRateLogger,
    StudentCheckpoint,
    TemperatureScheduler,
    anneal_temperatures,
)
from larq_bnext.training.distiller import Distiller, curriculum_phase, distillation_loss
from larq_bnext.training.optimizer import AdamW, is_conv_kernel
from larq_bnext.training.schedules import WarmupCosine, current_learning_rate
from larq_bnext.training.teachers import Teacher, default_teachers, imagenet_teacher
