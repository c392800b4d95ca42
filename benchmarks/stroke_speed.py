"""Speed of the differentiable stroke renderer (methods/sketch_controlnet/strokes.py).

Usage::

    python benchmarks/stroke_speed.py [--device cpu|cuda] [--batch 4] [--strokes 64]
                                      [--size 64] [--samples 16] [--repeats 5] [--json]

Renders ``--batch`` sketches of ``--strokes`` random cubic Bezier strokes on a
``--size`` x ``--size`` canvas, forward and forward + backward (gradients in the control
points, widths and opacities), after one warm-up call; prints the median time and the
throughput in strokes x pixels per second (batch * strokes * size^2 / time).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from methods.sketch_controlnet.strokes import render_strokes


def timed(fn, device: str, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--strokes", type=int, default=64)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(args.batch, args.strokes, 4, 2, generator=g).to(args.device)
    wid = torch.full((args.batch, args.strokes), 1.5, device=args.device)
    op = torch.full((args.batch, args.strokes), 0.8, device=args.device)
    pts.requires_grad_(True)
    wid.requires_grad_(True)
    op.requires_grad_(True)

    def forward():
        with torch.no_grad():
            render_strokes(pts, wid, op, size=args.size, samples=args.samples)

    def backward():
        render_strokes(pts, wid, op, size=args.size, samples=args.samples).sum().backward()

    work = args.batch * args.strokes * args.size**2
    out = {"device": args.device, "threads": torch.get_num_threads(), "batch": args.batch,
           "strokes": args.strokes, "size": args.size, "samples": args.samples}
    for name, fn in (("forward", forward), ("forward_backward", backward)):
        t = timed(fn, args.device, args.repeats)
        out[f"{name}_s"] = round(t, 5)
        out[f"{name}_strokes_pixels_per_s"] = round(work / t)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for k, v in out.items():
            print(f"{k:<36} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
