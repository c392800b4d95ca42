"""Training speed of the downstream classifier of a profile on this machine.

Usage::

    python benchmarks/downstream_speed.py [--profile cpu] [--images 1024] [--threads 1 2]

Trains the profile's first backbone for one epoch on random images of the profile's input
size (grayscale, 5 classes) for each torch thread count, and prints images per second and the
time one epoch of the chest X-ray phantom's training split (about 2,100 images at the cpu
profile) would take. Measured on a busy 2-core machine (other jobs running): the tiny ResNet
at 32 px trained at about 600 images/s on 1 thread and 5-10x slower on 2 threads (thread
synchronisation dominates such a small network), hence ``cpu_threads=1`` at the smoke and cpu
profiles.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from benchmark.downstream.classifier import ArrayData, train_classifier
from benchmark.profiles import PROFILES


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--phantom-train", type=int, default=2079,
                    help="training images per epoch to extrapolate to (default: cpu phantom)")
    args = ap.parse_args()
    prof = PROFILES.get(args.profile)
    size = prof.downstream.image_size or 64
    rng = np.random.default_rng(0)
    data = ArrayData(rng.integers(0, 256, (args.images, 1, size, size), dtype=np.uint8),
                     rng.integers(0, 5, args.images), np.array(["g"] * args.images, dtype=object))
    val = data.subset(np.arange(min(64, args.images)))
    backbone = prof.downstream.backbones[0]
    print(f"profile {prof.name}: backbone {backbone}, {size} px, batch "
          f"{prof.downstream.batch_size}, {args.images} images, 1 epoch")
    for threads in args.threads:
        cfg = dataclasses.replace(prof.downstream, epochs=1, cpu_threads=threads)
        t0 = time.perf_counter()
        train_classifier(train=data, val=val, n_classes=5, backbone=backbone, config=cfg,
                         seed=0, progress=False)
        dt = time.perf_counter() - t0
        rate = args.images / dt
        print(f"  {threads} thread(s): {rate:7.1f} images/s (incl. model build and val pass); "
              f"one epoch of {args.phantom_train} images ~ {args.phantom_train / rate:.1f} s")


if __name__ == "__main__":
    main()
