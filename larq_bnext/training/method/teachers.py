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
    "imagenet_class_indices",
    "check_teacher_classes",
    "default_teachers",
    "as_teacher",
    "loss_dtype",
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


def loss_dtype(tensor: tf.Tensor) -> tf.DType:
    """The dtype losses of ``tensor`` are computed in: float64 stays float64, every narrower
    float becomes float32.

    Args:
        tensor: logits.
    """
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
        class_indices: keep only these outputs, in this order (a teacher of all 1,000 ImageNet
            classes distilling a student of a subset of them; see
            :func:`imagenet_class_indices`). The softmax of the kept logits is the teacher's
            distribution conditioned on the subset. ``None`` keeps all outputs.
    """

    def __init__(
        self,
        model: tf.keras.Model,
        input_adapter: Callable[[tf.Tensor], tf.Tensor] | None = None,
        from_logits: bool = True,
        name: str | None = None,
        class_indices: Sequence[int] | None = None,
    ):
        if not isinstance(model, tf.keras.Model):
            raise TypeError(f"A teacher must be a tf.keras.Model, got {type(model).__name__}.")
        self.model = model
        self.model.trainable = False
        self.input_adapter = input_adapter
        self.from_logits = from_logits
        self.name = name or model.name
        self.class_indices = None
        if class_indices is not None:
            indices = [int(i) for i in class_indices]
            outputs = model.output_shape[-1] if _has_output_shape(model) else None
            if not indices or (outputs and not all(0 <= i < outputs for i in indices)):
                raise ValueError(
                    f"class_indices of teacher {self.name!r} must be indices into its "
                    f"{outputs} outputs, got {indices[:10]}."
                )
            self.class_indices = indices

    @property
    def num_classes(self) -> int | None:
        """Number of classes the teacher scores (after ``class_indices``); ``None``: unknown."""
        if self.class_indices is not None:
            return len(self.class_indices)
        return int(self.model.output_shape[-1]) if _has_output_shape(self.model) else None

    def logits(self, images: tf.Tensor) -> tf.Tensor:
        """The teacher's float32 (float64 for a float64 model) logits for ``images`` (no gradient).

        Args:
            images: a batch in the student's input format.
        """
        x = self.input_adapter(images) if self.input_adapter is not None else images
        out = self.model(x, training=False)
        out = tf.cast(out, loss_dtype(out))
        if not self.from_logits:
            out = tf.math.log(tf.clip_by_value(out, 1e-12, 1.0))
        if self.class_indices is not None:
            out = tf.gather(out, self.class_indices, axis=-1)
        return tf.stop_gradient(out)

    def __repr__(self):
        return f"Teacher({self.name!r})"


def _has_output_shape(model) -> bool:
    try:
        return model.output_shape[-1] is not None
    except (AttributeError, RuntimeError):  # a subclassed model not built yet
        return False


def check_teacher_classes(student: tf.keras.Model, teachers: Sequence[Teacher]) -> None:
    """Refuse teachers that score another number of classes than the student.

    Args:
        student: the student (logits output).
        teachers: the teachers.

    Raises:
        ValueError: naming the teacher and the fix.
    """
    classes = int(student.output_shape[-1])
    for t in teachers:
        if t.num_classes is not None and t.num_classes != classes:
            raise ValueError(
                f"The teacher {t.name!r} scores {t.num_classes} classes but the student "
                f"{classes}. Distilling a subset of ImageNet's classes from an ImageNet "
                "teacher needs the subset's positions among the 1,000 outputs: "
                "Teacher(..., class_indices=imagenet_class_indices(class_names)) (the train "
                "CLI does this when the class folders are named by WordNet id, n01440764...)."
            )


def as_teacher(teacher) -> Teacher | None:
    """``teacher`` as a :class:`Teacher` (a Keras model gets the identity adapter).

    Args:
        teacher: a :class:`Teacher`, a Keras classifier or ``None``.

    Raises:
        TypeError: for anything else.
    """
    if teacher is None or isinstance(teacher, Teacher):
        return teacher
    if isinstance(teacher, tf.keras.Model):
        return Teacher(teacher)
    raise TypeError(
        f"Expected a larq_bnext.Teacher or a tf.keras.Model as teacher, got {type(teacher)}."
    )


# --------------------------------------------------------------------------- teachers
def imagenet_class_indices(class_names: Sequence[str]) -> list[int]:
    """Positions of ImageNet classes, named by WordNet id, among the 1,000 outputs.

    The Keras ImageNet models (and BNext) order their outputs by sorted WordNet id, the order
    of :func:`larq_bnext.preprocessing.imagenet_class_index`.

    Args:
        class_names: WordNet ids such as ``"n01440764"`` (the class folders of an ImageNet
            subset).

    Raises:
        ValueError: naming the classes that are not ImageNet WordNet ids.
    """
    from larq_bnext.preprocessing import imagenet_class_index

    position = {wnid: i for i, (wnid, _) in enumerate(imagenet_class_index())}
    unknown = [c for c in class_names if c not in position]
    if unknown:
        raise ValueError(
            f"{len(unknown)} of the {len(class_names)} classes are not ImageNet WordNet ids "
            f"(e.g. {unknown[:3]}), so the 1,000-class ImageNet teachers cannot score them. "
            "Name the class folders by wnid (n01440764, ...), or train with --teachers=none "
            "or teachers of your own classes."
        )
    return [position[c] for c in class_names]


def imagenet_teacher(
    name: str,
    input_shape: tuple = (224, 224, 3),
    weights: str | None = "imagenet",
    class_names: Sequence[str] | None = None,
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
        weights: ``"imagenet"`` (downloaded once into ``~/.keras/models``), a weights file, or
            ``None``: the architecture with random weights, an *untrained* teacher (offline
            smoke tests of the recipe, unit tests).
        class_names: the student's classes as ImageNet WordNet ids when they are a subset of
            the 1,000 (the teacher then scores only those, see
            :func:`imagenet_class_indices`); ``None`` or 1,000 names: all outputs, in order.

    Raises:
        ValueError: for an unknown name, or class names that are not ImageNet wnids.
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
    indices = None
    if class_names is not None and len(class_names) != 1000:
        indices = imagenet_class_indices(class_names)
    return Teacher(
        model, input_adapter=denormalize_to_255, from_logits=True, name=key, class_indices=indices
    )


def default_teachers(
    size: str | registry.Recipe,
    input_shape: tuple = (224, 224, 3),
    weights: str | None = "imagenet",
    class_names: Sequence[str] | None = None,
) -> tuple[list[Teacher], Teacher]:
    """The original's teachers for a BNext size: ``(assistants, main)``, from its recipe in
    :mod:`larq_bnext.registry`.

    T and S: assistant EfficientNet-B0, main EfficientNet-B2. M: assistants B0 then B2, main
    B4. L: assistants B0, B4, ConvNeXt-Tiny, main ConvNeXt-Tiny (the last assistant *is* the
    main teacher, built once).

    Args:
        size: a registry model name (``"tiny"``, ``"T"``, ``"bnext18"``, ...) or a recipe.
        input_shape: the student's input shape.
        weights: passed to :func:`imagenet_teacher`.
        class_names: passed to :func:`imagenet_teacher`.
    """
    recipe = size if isinstance(size, registry.Recipe) else registry.resolve_model(size).recipe
    assistant_names, main_name = recipe.assistants, recipe.teacher
    built: dict[str, Teacher] = {}

    def get(teacher_name):
        if teacher_name not in built:
            built[teacher_name] = imagenet_teacher(teacher_name, input_shape, weights, class_names)
        return built[teacher_name]

    main = get(main_name)
    return [get(n) for n in assistant_names], main
