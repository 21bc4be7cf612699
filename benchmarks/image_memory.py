"""Peak memory of one awkward image file through ``predict`` and ``evaluate``, per case.

    python benchmarks/image_memory.py [--rounds=3] [--cap_gib=8] [--code=DIR] [--output=F.json]
        [--commands=predict,evaluate] [--cases=NAME,...] [--strips=2000,5000]

Writes the images of the worst cases into a temporary folder (a 1-pixel-wide strip, a
panorama, an 81-megapixel JPEG and PNG just under the default pixel limit, a PNG whose header
claims 100000 x 100000 pixels), then runs each case in a fresh child process and reads the
child's peak resident memory from the kernel (``os.wait4``'s ``ru_maxrss``, the peak of that
child alone):

* ``predict``: ``python -m larq_bnext.predict FILE --model=bnext_tiny --weights=none``;
* ``evaluate``: ``python -m larq_bnext.evaluate`` on a folder whose ``val/`` split holds the
  file beside an ordinary photograph (a custom BNext at 224).

Each child runs under an address-space limit of ``--cap_gib`` (a case that needs more fails
there instead of taking the machine's memory). The baseline of each command is the same
command on an ordinary 500 x 375 JPEG; the table gives the median peak over ``--rounds``
rounds (cases interleaved round by round), its spread, the median excess over the baseline
and how the command ended. ``--code`` runs another checkout's package (e.g. an export of
``main``) for a before/after comparison; ``--strips`` adds 1 x N JPEG strips of sizes the
former code could still afford, to show its memory growing with the aspect ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _smooth(height: int, width: int, seed: int = 0) -> Image.Image:
    """Photograph-like content (bilinear upsampled noise) of any size, cheaply."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, height // 64), max(2, width // 64), 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.BILINEAR)


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` RGB pixels, with one byte of data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0"))


def make_cases(root: str, strips=()) -> dict[str, str]:
    """Write the case files into ``root``; returns ``{case: path}``.

    Args:
        root: the folder.
        strips: heights of extra JPEG strips one pixel wide.
    """
    cases = {}

    def save(name, image, **options):
        path = os.path.join(root, name)
        image.save(path, **options)
        cases[name] = path

    save("photo_500x375.jpg", _smooth(375, 500), quality=90)
    for height in strips:
        save(f"strip_1x{height}.jpg", _smooth(height, 1), quality=90)
    save("strip_1x20000.jpg", _smooth(20000, 1), quality=90)  # width 1, height 20000
    save("strip_20000x1.jpg", _smooth(1, 20000), quality=90)
    save("strip_1x60000.png", _smooth(60000, 1))
    save("panorama_40000x2000.jpg", _smooth(2000, 40000), quality=90)
    save("square_9000x9000.jpg", _smooth(9000, 9000), quality=90)
    save("square_9000x9000.png", _smooth(9000, 9000), compress_level=1)
    path = os.path.join(root, "header_100000x100000.png")
    with open(path, "wb") as handle:
        handle.write(_png_claiming(100000, 100000))
    cases["header_100000x100000.png"] = path
    return cases


def _folder_with(root: str, case: str, path: str) -> str:
    """An image-folder tree whose val split holds ``path`` beside an ordinary photograph."""
    tree = os.path.join(root, "trees", case)
    for split in ("train", "val"):
        os.makedirs(os.path.join(tree, split, "a"), exist_ok=True)
        _smooth(375, 500, seed=1).save(os.path.join(tree, split, "a", "ok.jpg"), quality=90)
    os.symlink(path, os.path.join(tree, "val", "a", os.path.basename(path)))
    return tree


def run_child(argv: list[str], code: str, cap_gib: float) -> tuple[float, int, str]:
    """Run ``python argv...`` with ``code`` first on the path; (peak MiB, status, last line)."""
    env = dict(
        os.environ,
        PYTHONPATH=code,
        PYTHONDONTWRITEBYTECODE="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        CUDA_VISIBLE_DEVICES="",
    )
    cap = int(cap_gib * (1 << 30))

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    with tempfile.TemporaryFile() as log:
        child = subprocess.Popen(
            [sys.executable, *argv], cwd=code, env=env, stdout=log, stderr=log, preexec_fn=limit
        )
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        lines = [line for line in log.read().decode("utf-8", "replace").splitlines() if line]
    last = next(
        (line for line in reversed(lines) if "error" in line.lower() or "Error" in line), ""
    )
    return usage.ru_maxrss / 1024, child.returncode, last[-160:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cap_gib", type=float, default=8.0)
    parser.add_argument("--code", default=REPO, help="checkout whose larq_bnext is measured")
    parser.add_argument("--cases", default="", help="comma-separated case names (default all)")
    parser.add_argument("--commands", default="predict,evaluate")
    parser.add_argument(
        "--strips",
        default="",
        help="heights N of extra 1 x N JPEG strips (e.g. 2000,5000: what the former code can "
        "afford)",
    )
    parser.add_argument("--output", default=None)
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix="image_memory_")
    try:
        measure(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def measure(args, root: str) -> None:
    """Write the cases into ``root``, run them round after round, print (and write) the table.

    Args:
        args: the parsed command line.
        root: a scratch folder.
    """
    cases = make_cases(root, [int(n) for n in args.strips.split(",") if n])
    if args.cases:
        wanted = ["photo_500x375.jpg", *args.cases.split(",")]
        cases = {name: cases[name] for name in wanted}
    commands = {
        "predict": lambda path: [
            "-m",
            "larq_bnext.predict",
            path,
            "--model=bnext_tiny",
            "--weights=none",
            "--top=1",
        ],
        "evaluate": lambda path: [
            "-m",
            "larq_bnext.evaluate",
            "--dataset=folder",
            f"--data_dir={_folder_with(root, os.path.basename(path), path)}",
            "--stage_channels=8,16",
            "--image_size=224",
            "--batch_size=2",
            "--per_class_output=none",
        ],
    }
    argvs = {
        (command, case): commands[command](path)
        for command in args.commands.split(",")
        for case, path in cases.items()
    }
    peaks = {}
    for _ in range(args.rounds):
        for (command, case), argv in argvs.items():
            peak, status, last = run_child(argv, args.code, args.cap_gib)
            peaks.setdefault((command, case), []).append((peak, status, last))
            print(f"  {command:8} {case:28} {peak:8.0f} MiB  exit {status}", flush=True)

    table = []
    for (command, case), runs in peaks.items():
        base = statistics.median(p for p, _, _ in peaks[(command, "photo_500x375.jpg")])
        values = [p for p, _, _ in runs]
        table.append(
            dict(
                command=command,
                case=case,
                peak_mib=round(statistics.median(values)),
                spread_mib=round(max(values) - min(values)),
                over_baseline_mib=round(statistics.median(values) - base),
                exit=runs[-1][1],
                message=runs[-1][2],
            )
        )
    print(f"\ncode: {args.code}; cap {args.cap_gib} GiB; {args.rounds} rounds; medians (MiB)")
    columns = ("command", "case", "peak_mib", "spread_mib", "over_baseline_mib", "exit")
    widths = (9, 28, 9, 11, 18, 5)
    print(" ".join(name.rjust(width) for name, width in zip(columns, widths, strict=True)))
    for row in table:
        cells = [str(row[name]).rjust(width) for name, width in zip(columns, widths, strict=True)]
        print(" ".join(cells), row["message"][:90])
    if args.output:
        with open(args.output, "w") as handle:
            json.dump(table, handle, indent=1)


if __name__ == "__main__":
    main()
