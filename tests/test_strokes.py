"""The differentiable stroke renderer against analytic cases."""

import math
import xml.etree.ElementTree as ET

import pytest
import torch
from scipy import integrate

from methods.sketch_controlnet.strokes import bezier_points, render_strokes, strokes_to_svg


def line(x0, y0, x1, y1):
    """Control points of a straight cubic Bezier from (x0, y0) to (x1, y1)."""
    a, b = torch.tensor([x0, y0]), torch.tensor([x1, y1])
    return torch.stack([a + (b - a) * t for t in (0.0, 1 / 3, 2 / 3, 1.0)])


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_bezier_endpoints_and_midpoint():
    p = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    q = bezier_points(p, 3)
    # B(1/2) = (P0 + 3 P1 + 3 P2 + P3) / 8 = (0.5, 0.75)
    assert torch.allclose(q, torch.tensor([[0.0, 0.0], [0.5, 0.75], [1.0, 0.0]]))


def test_coverage_profile_across_a_straight_stroke():
    # horizontal stroke at y = 16 px on a 32 px canvas; pixel row r has its centre r + 0.5,
    # so rows 15, 14, 13 are 0.5, 1.5, 2.5 px away: ink = opacity * sigmoid((w/2 - d) / s)
    w, s, op = 3.0, 0.5, 0.8
    pts = line(0.1, 0.5, 0.9, 0.5)[None, None]
    ink = render_strokes(pts, w, op, size=32, softness=s)[0]
    for row in range(8, 25):
        d = abs(row + 0.5 - 16)
        assert ink[row, 16].item() == pytest.approx(op * sigmoid((w / 2 - d) / s), abs=1e-5)


def test_ink_area_of_a_stroke():
    # area of sigmoid((a - d) / s), d the distance to a segment of length L, a = w/2:
    # a strip L * 2 s ln(1 + e^(a/s)) plus the two round caps (one disc): int 2 pi r
    # sigmoid((a - r)/s) dr (scipy quad). Supersampled x8 to integrate over pixel area.
    size, w, s = 64, 4.0, 0.5
    x0, x1 = 0.2, 0.8
    length = (x1 - x0) * size
    a = w / 2
    strip = length * 2 * s * math.log1p(math.exp(a / s))
    disc, _ = integrate.quad(lambda r: 2 * math.pi * r * sigmoid((a - r) / s), 0, 50)
    ink = render_strokes(line(x0, 0.5, x1, 0.5)[None, None], w, 1.0, size=size, softness=s,
                         supersample=8, samples=4)
    assert ink.sum().item() == pytest.approx(strip + disc, rel=0.01)


def test_two_overlapping_strokes_composite_as_one_minus_product():
    pts = torch.stack([line(0.1, 0.5, 0.9, 0.5), line(0.5, 0.1, 0.5, 0.9)])[None]
    both = render_strokes(pts, 2.0, torch.tensor([[0.5, 0.6]]), size=32)
    one = render_strokes(pts[:, :1], 2.0, 0.5, size=32)
    two = render_strokes(pts[:, 1:], 2.0, 0.6, size=32)
    assert torch.allclose(both, 1 - (1 - one) * (1 - two), atol=1e-5)


def test_batched_and_chunked_rendering_equals_one_by_one():
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(3, 7, 4, 2, generator=g)
    wid = 1 + 2 * torch.rand(3, 7, generator=g)
    op = torch.rand(3, 7, generator=g)
    batch = render_strokes(pts, wid, op, size=24, chunk=3)
    for b in range(3):
        alone = render_strokes(pts[b:b + 1], wid[b:b + 1], op[b:b + 1], size=24, chunk=32)
        assert torch.allclose(batch[b], alone[0], atol=1e-5)


def test_gradients_move_a_stroke_toward_its_target():
    target = render_strokes(line(0.2, 0.6, 0.8, 0.6)[None, None], 3.0, 1.0, size=32,
                            softness=1.0)
    pts = line(0.2, 0.5, 0.8, 0.5)[None, None].clone().requires_grad_(True)
    wid = torch.tensor([[1.5]], requires_grad=True)
    op = torch.tensor([[0.5]], requires_grad=True)
    loss = ((render_strokes(pts, wid, op, size=32, softness=1.0) - target) ** 2).mean()
    loss.backward()
    for t in (pts, wid, op):
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    opt = torch.optim.Adam([pts, wid, op], lr=0.01)
    for _ in range(150):
        opt.zero_grad()
        loss = ((render_strokes(pts, wid, op, size=32, softness=1.0) - target) ** 2).mean()
        loss.backward()
        opt.step()
    y = pts.detach()[0, 0, :, 1]
    assert (y - 0.6).abs().max() < 0.02  # started 0.1 away
    assert wid.item() > 2.0 and op.item() > 0.7  # both moved toward the target's 3 px, 1.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(1)
    pts = torch.rand(2, 5, 4, 2, generator=g)
    cpu = render_strokes(pts, 2.0, 0.7, size=32)
    gpu = render_strokes(pts.cuda().requires_grad_(True), 2.0, 0.7, size=32)
    gpu.sum().backward()
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-4)


def test_bad_shapes_are_one_clear_error():
    with pytest.raises(ValueError, match="expected .batch, strokes, 4, 2."):
        render_strokes(torch.rand(5, 4, 2), size=8)
    with pytest.raises(ValueError, match="4 control points"):
        bezier_points(torch.rand(2, 3, 2))


def test_svg_has_one_cubic_path_per_stroke():
    pts = torch.stack([line(0.1, 0.5, 0.9, 0.5), line(0.5, 0.1, 0.5, 0.9)])
    svg = ET.fromstring(strokes_to_svg(pts, torch.tensor([1.5, 2.0]), torch.tensor([1, 0.5]),
                                       32))
    paths = [e for e in svg if e.tag.endswith("path")]
    assert len(paths) == 2 and paths[0].get("d").startswith("M 3.200 16.000 C")
