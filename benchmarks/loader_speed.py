"""How long the CheXpert loader takes on the real 223,414-row train.csv (target: < 30 s on a
2-core CPU; images are not touched: ``check="none"``).

Usage::

    python benchmarks/loader_speed.py

Times, separately: reading and mapping the table into standard-schema rows plus building the
``datasets.Dataset`` (the loader call), and ``schema.validate_dataset`` over the result (what
the runner does after loading). The csv is the copy shipped in ``torchxrayvision``.
"""

from __future__ import annotations

import gzip
import logging
import os
import tempfile
import time


def main() -> int:
    import torchxrayvision

    from benchmark.data.real.chexpert import load
    from benchmark.schema import validate_dataset

    logging.disable(logging.WARNING)
    src = os.path.join(os.path.dirname(torchxrayvision.__file__), "data",
                       "chexpert_train.csv.gz")
    with tempfile.TemporaryDirectory() as tmp:
        folder = os.path.join(tmp, "CheXpert-v1.0-small")
        os.makedirs(folder)
        with open(os.path.join(folder, "train.csv"), "wb") as f:
            f.write(gzip.open(src).read())
        t0 = time.perf_counter()
        ds = load(root=tmp, check="none", views=("frontal", "lateral"))
        t1 = time.perf_counter()
        validate_dataset(ds, source="chexpert")
        t2 = time.perf_counter()
    print(f"chexpert load: {len(ds)} rows in {t1 - t0:.1f} s ({len(ds) / (t1 - t0):,.0f} rows/s)")
    print(f"validate_dataset: {t2 - t1:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
