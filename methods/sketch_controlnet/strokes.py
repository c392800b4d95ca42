"""A differentiable renderer of cubic Bezier strokes, in torch (DiffSketcher's pydiffvg is not
installable here; see docs in ``methods/sketch_controlnet/README.md``).

A sketch is S strokes, each a cubic Bezier curve with 4 control points (DiffSketcher's
single-segment paths), a width in pixels and an opacity. :func:`render_strokes` draws a batch
of B sketches of S strokes onto an H x W canvas; the ink is differentiable in the control
points, widths and opacities, on any torch device:

- each curve is sampled at K points into a polyline (:func:`bezier_points`):
  B(t) = (1-t)^3 P0 + 3 (1-t)^2 t P1 + 3 (1-t) t^2 P2 + t^3 P3, t = 0, 1/(K-1), ..., 1;
- the distance from pixel centre p to a segment [a, b] is |p - a - u (b - a)| with
  u = clamp((p - a).(b - a) / |b - a|^2, 0, 1); a stroke's distance d is the smallest over
  its K - 1 segments;
- a stroke covers p with alpha = opacity * sigmoid((w / 2 - d) / s) (s the edge softness in
  pixels: a soft edge of a round-capped stroke of width w);
- the ink of p is 1 - prod_i (1 - alpha_i) over the strokes (black strokes composited
  over a white canvas: the rendered image is 1 - ink).

Supersampling (``supersample`` > 1: render at that factor and average-pool) gives the
area-integrated ink; annealing ``softness`` from coarse to fine widens the gradients' reach
early in an optimisation. Coordinates: control points in [0, 1]^2 as (x, y), x to the right
and y down, the canvas spanning [0, 1] in both (pixel (r, c) has centre ((c + 0.5) / W,
(r + 0.5) / H)); widths and softness in pixels of the output canvas.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: DiffSketcher's stroke width (pixels) and its Bezier samples per stroke here
DEFAULT_WIDTH = 1.5
DEFAULT_SAMPLES = 16


def bezier_points(points: torch.Tensor, samples: int = DEFAULT_SAMPLES) -> torch.Tensor:
    """Cubic Bezier curves sampled at ``samples`` evenly spaced t in [0, 1].

    ``points``: (..., 4, 2) control points; returns (..., samples, 2).
    """
    if points.shape[-2:] != (4, 2):
        raise ValueError(f"control points have shape {tuple(points.shape)}; expected "
                         "(..., 4, 2): 4 control points (x, y) per stroke")
    if samples < 2:
        raise ValueError(f"samples={samples}: expected at least 2 points per stroke")
    t = torch.linspace(0.0, 1.0, samples, device=points.device, dtype=points.dtype)
    u = 1.0 - t
    basis = torch.stack([u**3, 3 * u**2 * t, 3 * u * t**2, t**3], dim=-1)  # (K, 4)
    return torch.einsum("kc,...cd->...kd", basis, points)


def segment_distance(pixels: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance from each pixel to each segment [a, b]: |p - a - u (b - a)|,
    u = clamp((p - a).(b - a) / |b - a|^2, 0, 1).

    ``pixels``: (P, 2); ``a``, ``b``: (..., 2); returns (..., P) in the units of the inputs.
    """
    return torch.sqrt(_segment_distance_sq(pixels, a, b) + 1e-12)


def _segment_distance_sq(pixels: torch.Tensor, a: torch.Tensor, b: torch.Tensor
                         ) -> torch.Tensor:
    # x and y apart, so no (..., P, 2) intermediate is stacked
    px, py = pixels[:, 0], pixels[:, 1]
    ax, ay = a[..., 0:1], a[..., 1:2]
    abx, aby = b[..., 0:1] - ax, b[..., 1:2] - ay
    inv = 1.0 / (abx * abx + aby * aby).clamp_min(1e-12)
    apx, apy = px - ax, py - ay
    u = ((apx * abx + apy * aby) * inv).clamp(0.0, 1.0)
    dx, dy = apx - u * abx, apy - u * aby
    return dx * dx + dy * dy


def pixel_centres(height: int, width: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """(H * W, 2) pixel centres (x, y) in pixel units, row-major."""
    ys = torch.arange(height, device=device, dtype=dtype) + 0.5
    xs = torch.arange(width, device=device, dtype=dtype) + 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)


def render_strokes(points: torch.Tensor, widths: torch.Tensor | float = DEFAULT_WIDTH,
                   opacities: torch.Tensor | float = 1.0, *, size: int | tuple[int, int],
                   samples: int = DEFAULT_SAMPLES, softness: float = 0.5,
                   supersample: int = 1, chunk: int = 32) -> torch.Tensor:
    """The ink of B sketches of S strokes each: (B, H, W) in [0, 1] (1 = fully inked).

    Args:
        points: (B, S, 4, 2) control points in [0, 1]^2 (x, y).
        widths: (B, S) stroke widths in output pixels (or one number for all).
        opacities: (B, S) in [0, 1] (or one number).
        size: H = W, or (H, W).
        samples: Bezier samples per stroke (K; K - 1 segments).
        softness: edge softness s of the sigmoid coverage, in output pixels (> 0).
        supersample: render at this factor and average-pool down.
        chunk: strokes rendered at a time (bounds memory at B * chunk * K * H * W).
    """
    if points.dim() != 4:
        raise ValueError(f"control points have shape {tuple(points.shape)}; expected "
                         "(batch, strokes, 4, 2)")
    if softness <= 0:
        raise ValueError(f"softness={softness}: expected > 0 pixels")
    if supersample < 1:
        raise ValueError(f"supersample={supersample}: expected an integer >= 1")
    h, w = (size, size) if isinstance(size, int) else size
    bsz, n = points.shape[:2]
    widths = torch.as_tensor(widths, dtype=points.dtype, device=points.device).expand(bsz, n)
    opac = torch.as_tensor(opacities, dtype=points.dtype, device=points.device).expand(bsz, n)
    f = supersample
    pix = pixel_centres(h * f, w * f, device=points.device, dtype=points.dtype)
    scale = torch.tensor([w * f, h * f], device=points.device, dtype=points.dtype)
    poly = bezier_points(points, samples) * scale  # (B, S, K, 2) in supersampled pixels
    # log of the canvas' remaining white, accumulated over chunks of strokes
    log_white = torch.zeros(bsz, pix.shape[0], device=points.device, dtype=points.dtype)
    for lo in range(0, n, chunk):
        seg = poly[:, lo:lo + chunk]
        # (B, c, P): the nearest segment's squared distance, one sqrt per stroke and pixel
        d2 = _segment_distance_sq(pix, seg[:, :, :-1], seg[:, :, 1:]).amin(dim=2)
        d = torch.sqrt(d2 + 1e-12)
        half = (widths[:, lo:lo + chunk] * f / 2).unsqueeze(-1)
        alpha = opac[:, lo:lo + chunk].unsqueeze(-1) * torch.sigmoid((half - d) / (softness * f))
        log_white = log_white + torch.log1p(-alpha.clamp(max=1 - 1e-6)).sum(dim=1)
    ink = (1.0 - torch.exp(log_white)).view(bsz, 1, h * f, w * f)
    if f > 1:
        ink = F.avg_pool2d(ink, f)
    return ink[:, 0]


def strokes_to_svg(points, widths, opacities, size: int | tuple[int, int]) -> str:
    """One sketch (S strokes: points (S, 4, 2), widths (S,), opacities (S,)) as an SVG
    document of cubic Bezier paths, black on white, in output pixels."""
    h, w = (size, size) if isinstance(size, int) else size
    pts = torch.as_tensor(points).detach().cpu().double()
    wid = torch.as_tensor(widths).detach().cpu().double().expand(pts.shape[0])
    op = torch.as_tensor(opacities).detach().cpu().double().expand(pts.shape[0])
    paths = []
    for p, sw, o in zip(pts, wid, op, strict=True):
        xy = [(float(x) * w, float(y) * h) for x, y in p]
        d = "M {:.3f} {:.3f} C {:.3f} {:.3f} {:.3f} {:.3f} {:.3f} {:.3f}".format(
            *[c for q in xy for c in q])
        paths.append(f'<path d="{d}" stroke="black" stroke-width="{float(sw):.3f}" '
                     f'stroke-opacity="{float(o):.4f}" stroke-linecap="round" fill="none"/>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}"><rect width="{w}" height="{h}" fill="white"/>'
            + "".join(paths) + "</svg>\n")
