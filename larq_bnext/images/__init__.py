"""Reading images: file names, headers and the pixel limit, decoding, resampling.

* :mod:`~larq_bnext.images.files`: paths as the operating system gives them and their
  printable form (:func:`display_path`), the size in a file's header (:func:`read_header`),
  the pixel limit (:data:`MAX_IMAGE_PIXELS`, :func:`check_pixels`), the folder scan's check
  (:func:`unreadable_reason`);
* :mod:`~larq_bnext.images.decode`: encoded bytes to RGB pixels in TensorFlow
  (:func:`decode_rgb`: TensorFlow's decoders, PIL for what they cannot read), and a JPEG's
  crop window at libjpeg's DCT scales;
* :mod:`~larq_bnext.images.resampling`: the bicubic anti-aliased resize of a window, as two
  sparse matrix products;
* :mod:`~larq_bnext.images.transform`: the projective transform of the RandAugment affine ops
  (:func:`projective_transform`: TensorFlow Addons where installed, TensorFlow's op elsewhere).

The evaluation transform (:mod:`larq_bnext.preprocessing`), the training crop
(:mod:`larq_bnext.augment`), the input pipelines and ``predict`` are built on
them. See the documentation's "Image files" page for what each kind of file gets.
"""

from larq_bnext.images.decode import decode_rgb
from larq_bnext.images.files import (
    MAX_IMAGE_PIXELS,
    ImageFileError,
    ImageTooLargeError,
    check_image_file,
    check_pixels,
    display_path,
    read_header,
    unreadable_reason,
)
from larq_bnext.images.resampling import resize_window
from larq_bnext.images.transform import projective_transform

__all__ = [
    "MAX_IMAGE_PIXELS",
    "ImageFileError",
    "ImageTooLargeError",
    "display_path",
    "read_header",
    "check_pixels",
    "check_image_file",
    "unreadable_reason",
    "decode_rgb",
    "resize_window",
    "projective_transform",
]
