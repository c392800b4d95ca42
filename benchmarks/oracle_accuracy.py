"""Accuracy of each phantom oracle on held-out phantom images, and its training time.

Trains (or loads from the cache) the oracle of every phantom with the default
:class:`benchmark.oracle.OracleConfig` (64 px), then prints, per phantom, the accuracy of
every head (finding, phenotype, attributes) on a fresh balanced held-out population (stream
``oracle-heldout``, disjoint from the training population) and the training time. The
acceptance target is a finding accuracy of at least 0.90 at 64 px.

    python benchmarks/oracle_accuracy.py [--phantom phantom-cxr ...] [--n-heldout 1500]
        [--threads 1] [--image-size 64] [--no-cache]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time

import torch

from benchmark.oracle import PHANTOM_SPECS, OracleConfig, get_oracle, oracle_accuracy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phantom", action="append", help="phantom dataset (default: all)")
    ap.add_argument("--n-heldout", type=int, default=1500)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--image-size", type=int, default=OracleConfig().image_size)
    ap.add_argument("--no-cache", action="store_true", help="train in a temporary cache")
    ap.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = dataclasses.replace(OracleConfig(), image_size=args.image_size)
    names = args.phantom or PHANTOM_SPECS.names()
    print(f"oracle config: {config.as_dict()}; torch threads {torch.get_num_threads()}")
    results = {}
    tmp = tempfile.TemporaryDirectory() if args.no_cache else None
    for name in names:
        t0 = time.perf_counter()
        oracle = get_oracle(name, config, cache_dir=tmp.name if tmp else None)
        wall = time.perf_counter() - t0
        acc = oracle_accuracy(oracle, args.n_heldout, seed=0)
        results[name] = {"accuracy": acc, "train_seconds": oracle.train_seconds,
                         "this_call_seconds": wall, "feature_dim": oracle.feature_dim}
        heads = ", ".join(f"{k} {v:.3f}" for k, v in acc.items())
        print(f"{name}: {heads}; trained in {oracle.train_seconds:.0f} s "
              f"(this call {wall:.0f} s), {args.n_heldout} held-out images", flush=True)
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
