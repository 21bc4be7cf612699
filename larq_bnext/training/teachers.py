"""The frozen float teachers of BNext's distillation.

:class:`Teacher` wraps any Keras model (with its own input transform);
:func:`imagenet_teacher` builds a ``tf.keras.applications`` teacher by the names the CLI uses
(:data:`KERAS_TEACHERS`); :func:`default_teachers` returns a size's assistants and main teacher
from its recipe in :mod:`larq_bnext.registry`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

from larq_bnext import registry
from larq_bnext.preprocessing import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "KERAS_TEACHERS",
    "denormalize_to_255",
    "Teacher",
    "imagenet_teacher",
    "default_teachers",
]


#: ``tf.keras.applications`` teachers by the names the CLI and assignments use.
KERAS_TEACHERS = {
    "efficientnet_b0": "EfficientNetB0",
    "efficientnet_b2": "EfficientNetB2",
    "efficientnet_b4": "EfficientNetB4",
    "convnext_tiny": "ConvNeXtTiny",
}


def denormalize_to_255(
    images: tf.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> tf.Tensor:
    """Map mean/std-normalised images back to ``[0, 255]`` RGB.

    This is the input adapter of the Keras EfficientNet and ConvNeXt teachers, which normalise
    internally and expect raw ``0-255`` pixels.

    Args:
        images: ``(..., 3)`` tensor normalised as ``(x / 255 - mean) / std``.
        mean: per-channel mean on ``[0, 1]``.
        std: per-channel standard deviation on ``[0, 1]``.

    Returns:
        A tensor of the same shape and dtype with values on the ``0-255`` scale.
    """
    dtype = images.dtype
    mean = tf.constant(mean, dtype)
    std = tf.constant(std, dtype)
    return (images * std + mean) * tf.constant(255.0, dtype)


def _loss_dtype(tensor: tf.Tensor) -> tf.DType:
    """float64 stays float64; every narrower float is computed in float32."""
    return tf.float64 if tensor.dtype == tf.float64 else tf.float32


class Teacher:
    """A frozen teacher: a Keras classifier and the adapter that prepares its input.

    Every teacher sees the same (augmented) batch as the student; ``input_adapter`` maps it to
    the range the teacher expects (for example :func:`denormalize_to_255` for the Keras
    ImageNet models). The teacher runs in inference mode (``training=False``), its weights are
    frozen, and no gradient flows through it.

    Args:
        model: a Keras model mapping images to class scores.
        input_adapter: callable applied to the student's input before the teacher; ``None``
            feeds the student's input unchanged.
        from_logits: whether ``model`` outputs logits (``True``) or probabilities.
        name: a name for logs; defaults to the model's name.
    """

    def __init__(
        self,
        model: tf.keras.Model,
        input_adapter: Callable[[tf.Tensor], tf.Tensor] | None = None,
        from_logits: bool = True,
        name: str | None = None,
    ):
        if not isinstance(model, tf.keras.Model):
            raise TypeError(f"A teacher must be a tf.keras.Model, got {type(model).__name__}.")
        self.model = model
        self.model.trainable = False
        self.input_adapter = input_adapter
        self.from_logits = from_logits
        self.name = name or model.name

    def logits(self, images: tf.Tensor) -> tf.Tensor:
        """The teacher's float32 (float64 for a float64 model) logits for ``images`` (no gradient).

        Args:
            images: a batch in the student's input format.
        """
        x = self.input_adapter(images) if self.input_adapter is not None else images
        out = self.model(x, training=False)
        out = tf.cast(out, _loss_dtype(out))
        if not self.from_logits:
            out = tf.math.log(tf.clip_by_value(out, 1e-12, 1.0))
        return tf.stop_gradient(out)

    def __repr__(self):
        return f"Teacher({self.name!r})"


def _as_teacher(teacher) -> Teacher:
    if teacher is None or isinstance(teacher, Teacher):
        return teacher
    if isinstance(teacher, tf.keras.Model):
        return Teacher(teacher)
    raise TypeError(
        f"Expected a larq_bnext.Teacher or a tf.keras.Model as teacher, got {type(teacher)}."
    )


# --------------------------------------------------------------------------- teachers
def imagenet_teacher(
    name: str, input_shape: tuple = (224, 224, 3), weights: str | None = "imagenet"
) -> Teacher:
    """A ``tf.keras.applications`` ImageNet classifier as a frozen teacher.

    The Keras EfficientNets and ConvNeXt normalise internally and expect ``0-255`` RGB, so the
    teacher's adapter de-normalises the student's mean/std-normalised crop. Every teacher sees
    the student's crop size (as in the original, which feeds the same 224 crop to all its
    torchvision teachers); the pretrained weights do not depend on the input size. Under a
    mixed-precision global policy the teacher is built (and runs) in mixed precision.

    Args:
        name: one of :data:`KERAS_TEACHERS` (``"efficientnet_b0"``, ``"efficientnet_b2"``,
            ``"efficientnet_b4"``, ``"convnext_tiny"``).
        input_shape: the student's input shape.
        weights: ``"imagenet"`` (downloaded once into ``~/.keras/models``) or ``None`` (random,
            for tests).

    Raises:
        ValueError: for an unknown name.
        RuntimeError: when the ImageNet weights cannot be downloaded (offline).
    """
    key = name.strip().lower().replace("-", "_")
    if key not in KERAS_TEACHERS:
        raise ValueError(
            f"Unknown teacher {name!r}; choose from {sorted(KERAS_TEACHERS)} or build a "
            "larq_bnext.Teacher from your own Keras classifier."
        )
    builder = getattr(tf.keras.applications, KERAS_TEACHERS[key])
    pretrained = None
    if weights == "imagenet":
        try:
            # Keras only loads ImageNet weights at the model's native input size; the weights
            # do not depend on it, so they are copied into a model at the student's size.
            pretrained = builder(weights="imagenet", classifier_activation=None)
        except Exception as error:  # any download failure means the same to the user
            raise RuntimeError(
                f"Could not get the ImageNet weights of the teacher {KERAS_TEACHERS[key]} "
                f"({error}). They are downloaded once from storage.googleapis.com into "
                "~/.keras/models: connect to the internet (or copy the file there), or train "
                "without these teachers (--teachers=none, or a teacher of your own)."
            ) from error
    model = builder(
        weights=None, input_shape=tuple(input_shape), classifier_activation=None, classes=1000
    )
    if pretrained is not None:
        model.set_weights(pretrained.get_weights())
        del pretrained
    elif weights is not None:
        model.load_weights(weights)
    model.trainable = False
    return Teacher(model, input_adapter=denormalize_to_255, from_logits=True, name=key)


def default_teachers(
    size: str, input_shape: tuple = (224, 224, 3), weights: str | None = "imagenet"
) -> tuple[list[Teacher], Teacher]:
    """The original's teachers for a BNext size: ``(assistants, main)``, from its recipe in
    :mod:`larq_bnext.registry`.

    T and S: assistant EfficientNet-B0, main EfficientNet-B2. M: assistants B0 then B2, main
    B4. L: assistants B0, B4, ConvNeXt-Tiny, main ConvNeXt-Tiny (the last assistant *is* the
    main teacher, built once).

    Args:
        size: a BNext size name (``"tiny"``, ``"T"``, ...).
        input_shape: the student's input shape.
        weights: passed to :func:`imagenet_teacher`.
    """
    recipe = registry.get(size).recipe
    assistant_names, main_name = recipe.assistants, recipe.teacher
    built: dict[str, Teacher] = {}

    def get(teacher_name):
        if teacher_name not in built:
            built[teacher_name] = imagenet_teacher(teacher_name, input_shape, weights)
        return built[teacher_name]

    main = get(main_name)
    return [get(n) for n in assistant_names], main
