"""How long the phantoms take to generate images (target: 1,000 at 64 px < 30 s on 2 cores).

Usage::

    python benchmarks/phantom_speed.py [--n 1000] [--size 64] [--seed 0]

Times, for the chest X-ray phantom separately: reading the CheXpert calibration table (once per
process), drawing the parameters, rendering the pixels, and the whole uncached ``generate``
call (rendering, PNG encoding, building the ``datasets.Dataset`` and saving it to a temporary
disk cache); then the uncached loader of every registered phantom (chest X-ray, skin, brain,
cardiac; the cardiac rows also render and encode their segmentation masks).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="number of images")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FAIRSYNTH_CACHE"] = tmp  # never time a cache hit
        from benchmark.data.phantoms import cxr

        t0 = time.perf_counter()
        cxr.chexpert_joint_counts()
        t_cal = time.perf_counter() - t0

        t0 = time.perf_counter()
        params = cxr.generate_params(args.n, seed=args.seed)
        t_params = time.perf_counter() - t0

        t0 = time.perf_counter()
        for p in params:
            cxr.render(p, args.size)
        t_render = time.perf_counter() - t0

        t0 = time.perf_counter()
        ds = cxr.generate(args.n, image_size=args.size, seed=args.seed)
        t_generate = time.perf_counter() - t0

    print(f"phantom-cxr {cxr.PHANTOM_VERSION}: {args.n} images at {args.size} px "
          f"(cpu cores available: {os.cpu_count()})")
    print(f"  calibration table (once per process): {t_cal:8.2f} s")
    print(f"  sample_params:                         {t_params:8.2f} s")
    print(f"  render only:                           {t_render:8.2f} s "
          f"({1000 * t_render / args.n:.2f} ms/image)")
    print(f"  generate (uncached, full dataset):     {t_generate:8.2f} s  -> {len(ds)} rows")

    # every registered phantom through its loader, uncached (issue target: 1,000 in < 30 s)
    from benchmark.data import DATASETS

    for name, spec in DATASETS.items():
        if not spec.phantom:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["FAIRSYNTH_CACHE"] = tmp
            t0 = time.perf_counter()
            spec.loader(root=None, image_size=args.size, n_images=args.n, seed=args.seed)
            print(f"{name:<16} loader, {args.n} images at {args.size} px (uncached): "
                  f"{time.perf_counter() - t0:6.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
