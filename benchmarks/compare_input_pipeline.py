"""The training input pipeline's throughput, this tree against a baseline tree, side by side.

    python benchmarks/compare_input_pipeline.py --baseline=/tmp/base [--rounds=4] \
        [--images=128] [--batches=20] [--threads=2]

``--baseline`` is a checkout of the code to compare with (e.g. ``git archive main | tar -x -C
/tmp/base``). Both trees time the same JPEGs (written once, :func:`input_pipeline.make_jpegs`)
with :func:`input_pipeline.measure` (images per CPU second of the process), without and with
RandAugment, in interleaved rounds (baseline, this tree, baseline, ...), each in a fresh
Python process with that tree first on ``PYTHONPATH``. It prints every round and the ratio
this/baseline per round and of the medians: on a shared machine the ratios of neighbouring
rounds are the figure that holds, not the absolute rates.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_CHILD = r"""
import json, os, sys
sys.path.insert(0, os.path.join(sys.argv[1], "benchmarks"))
import input_pipeline as bench
try:
    from larq_bnext.augment import AugmentConfig
except ImportError:  # a tree from before larq_bnext.augment
    from larq_bnext.training.augmentation import AugmentConfig
root, batch_size, batches, threads = sys.argv[2], *map(int, sys.argv[3:6])
source = bench._source(root)
out = {}
for name, settings in (("without", dict(randaugment=False)), ("with", dict())):
    config = AugmentConfig(image_size=224, **settings)
    out[name] = bench.measure(source, config, batch_size, batches, threads, rounds=1)[1]
print(json.dumps(out))
"""


def _round(tree: str, root: str, args) -> dict:
    env = {**os.environ, "PYTHONPATH": tree, "TF_CPP_MIN_LOG_LEVEL": "3"}
    argv = [tree, root, args.batch_size, args.batches, args.threads]
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, *map(str, argv)],
        env=env,
        cwd=tree,  # python -c puts the working directory first on sys.path
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise RuntimeError(f"the round in {tree} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="root of the baseline checkout")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(HERE, "benchmarks"))
    import input_pipeline

    rows = {"baseline": [], "this": []}
    with tempfile.TemporaryDirectory() as root:
        input_pipeline.make_jpegs(root, args.images)
        for i in range(args.rounds):
            for label, tree in (("baseline", args.baseline), ("this", HERE)):
                rows[label].append(_round(tree, root, args))
            base, this = rows["baseline"][-1], rows["this"][-1]
            ratios = {k: round(this[k] / base[k], 3) for k in base}
            print(f"round {i}: baseline {base} this {this} ratio {ratios}", flush=True)
    summary = {}
    for key in ("without", "with"):
        base = [r[key] for r in rows["baseline"]]
        this = [r[key] for r in rows["this"]]
        summary[f"{key}_randaugment"] = {
            "baseline_images_per_cpu_second": [round(v, 1) for v in base],
            "this_images_per_cpu_second": [round(v, 1) for v in this],
            "ratio_per_round": [round(t / b, 3) for t, b in zip(this, base, strict=True)],
            "ratio_of_medians": round(float(np.median(this) / np.median(base)), 3),
        }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
