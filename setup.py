"""Packaging for larq_bnext: BNext binary neural networks in Keras and Larq."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
# The version is written once, in larq_bnext/__init__.py (read as text: importing the package
# would import TensorFlow).
VERSION = re.search(
    r'^__version__ = "([^"]+)"$', (HERE / "larq_bnext" / "__init__.py").read_text(), re.M
).group(1)

INSTALL_REQUIRES = [
    # Larq needs Keras 2: tf.keras is Keras 2 on TensorFlow 2.15, and from 2.16 on with
    # TF_USE_LEGACY_KERAS=1, from tf-keras (larq_bnext/keras2.py sets it where needed). The
    # tested versions: constraints.txt (TF 2.15) and constraints-compat.txt (TF 2.17).
    "tensorflow>=2.15,<2.18",
    "tf-keras>=2.15,<2.18",  # each tf-keras release requires its own TensorFlow minor version
    "larq>=0.14,<0.15",
    "larq-zoo>=2.4,<2.5",
    # No wheels for Python 3.12; larq_bnext/images/transform.py calls TensorFlow's op there.
    'tensorflow-addons>=0.23,<0.24; python_version < "3.12"',
    "keras-cv>=0.9,<0.10",
    "absl-py>=1.4",
    "numpy<2",
    "pillow>=9",
    "tqdm>=4",
    "filelock>=3.12",  # one process at a time downloads a checkpoint (larq_bnext.weights.sources)
    "scikit-learn>=1.2",  # ships the embedded default dataset (handwritten digits)
]

EXTRAS = {
    "deploy": ["larq-compute-engine>=0.16,<0.17", "matplotlib>=3.7"],
    "test": [
        "pytest>=7",
        "pytest-timeout>=2",
        "pytest-xdist>=3.5",  # make test spreads tests and notebooks over the CPU cores
        "torch==2.13.0",  # writes genuine PyTorch checkpoints in tests; never needed at run time
        "ruff>=0.5",
        "nbmake>=1.5",
        "matplotlib>=3.7",
    ],
    "docs": [
        "mkdocs>=1.5",
        "mkdocs-material>=9",
        "mkdocstrings[python]>=0.24",
        "mkdocs-jupyter>=0.24",
    ],
    "notebooks": ["jupyter>=1", "matplotlib>=3.7", "nbmake>=1.5"],
    "datasets": ["tensorflow-datasets>=4.6"],
}

setup(
    name="larq_bnext",
    version=VERSION,
    description="BNext binary neural networks (T/S/M/L) in Keras with Larq: pretrained "
    "ImageNet weights, the paper's distillation recipe, and edge deployment with LCE.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    # 3.10: zip(strict=...), X | Y unions at run time; 3.12: TensorFlow 2.16 and 2.17's wheels
    # (TensorFlow 2.15 has none for 3.12; 2.18 is untested).
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["larq_bnext", "larq_bnext.*"]),
    package_data={"larq_bnext": ["resources/*.json", "resources/*.csv"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
