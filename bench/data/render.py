"""Anti-aliased drawing primitives for the procedurally generated mini tasks.

Everything is drawn on a 2x supersampled canvas and box-filtered down, so edges are
smooth and a network cannot key on aliasing artefacts. Coordinates are in pixels of the
final 32x32 image. Pure numpy: generation must not need torch.
"""
import numpy as np

SIZE = 32  # output image side, pixels
SS = 2  # supersampling factor
_c = (np.arange(SIZE * SS) + 0.5) / SS
Y, X = np.meshgrid(_c, _c, indexing="ij")  # (64, 64) pixel-centre coordinates
_XC, _YC = X[0], Y[:, 0]  # (64,) each: the columns' and the rows' centres

# Polygons in unit shape coordinates (u to the right, v down), radius about 1.
_POLYGONS = {
    "hexagon": [(np.cos(a), np.sin(a)) for a in np.arange(6) * np.pi / 3],
    "star": [((1.0 if i % 2 == 0 else 0.45) * np.cos(a - np.pi / 2), (1.0 if i % 2 == 0 else 0.45) * np.sin(a - np.pi / 2))
             for i, a in enumerate(np.arange(10) * np.pi / 5)],
    "triangle": [(0.0, -1.0), (0.87, 0.5), (-0.87, 0.5)],
    "long_triangle": [(1.0, 0.0), (-1.0, 0.42), (-1.0, -0.42)],  # points to +u: no rotational symmetry
    "arrow": [(-1, -0.18), (0.2, -0.18), (0.2, -0.55), (1, 0), (0.2, 0.55), (0.2, 0.18), (-1, 0.18)],
}


def _in_polygon(u: np.ndarray, v: np.ndarray, verts) -> np.ndarray:
    """Even-odd crossing test, vectorised over pixels."""
    inside = np.zeros(u.shape, dtype=bool)
    for (x1, y1), (x2, y2) in zip(verts, verts[1:] + verts[:1]):
        crosses = (y1 > v) != (y2 > v)
        x_at = (x2 - x1) * (v - y1) / (y2 - y1 + 1e-12) + x1
        inside ^= crosses & (u < x_at)
    return inside


def shape_mask(kind: str, cx: float, cy: float, r: float, angle: float = 0.0) -> np.ndarray:
    """Boolean (64, 64) mask of a shape centred at (cx, cy) with radius r pixels, rotated by angle (rad)."""
    dx, dy = (X - cx) / r, (Y - cy) / r
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy  # shape-local coordinates
    rr = u * u + v * v
    if kind == "circle":
        return rr <= 1
    if kind == "ellipse":
        return u * u + (v / 0.55) ** 2 <= 1
    if kind == "square":
        return np.maximum(abs(u), abs(v)) <= 0.8
    if kind == "ring":
        return (rr <= 1) & (rr >= 0.55**2)
    if kind == "diamond":
        return abs(u) + abs(v) <= 1
    if kind == "cross":
        return ((abs(u) <= 0.3) & (abs(v) <= 1)) | ((abs(v) <= 0.3) & (abs(u) <= 1))
    if kind == "T":
        return ((abs(u) <= 1) & (v >= -1) & (v <= -0.5)) | ((abs(u) <= 0.25) & (abs(v) <= 1))
    if kind == "crescent":
        return (rr <= 1) & ((u - 0.45) ** 2 + v * v > 0.75**2)
    if kind == "heart":
        x, y = u * 1.25, -v * 1.25 + 0.25
        return (x * x + y * y - 1) ** 3 - x * x * y**3 <= 0
    if kind in _POLYGONS:
        return _in_polygon(u, v, _POLYGONS[kind])
    raise ValueError(f"unknown shape {kind!r}")


def strokes(segments: np.ndarray, width: float) -> np.ndarray:
    """Coverage (64, 64) in [0, 1] of a pen of `width` px along segments (S, 2, 2) ([[x0, y0], [x1, y1]] px): 1 within
    width / 2 of a segment, falling to 0 over the next output pixel (a soft edge, like an upscaled scan).

    Each segment is measured only over the canvas pixels its ink can reach (its endpoints' box widened by the pen's
    reach, plus a pixel): a pixel outside every such window is beyond the reach of every segment, so its coverage is 0
    either way, and a pixel inside gets the same arithmetic, element for element, as over the whole canvas. So the
    images are the same bytes as measuring every segment over the whole canvas, in about a sixth of the time (the
    glyphs were half the upstream task's drawing time)."""
    start, d = segments[:, 0], segments[:, 1] - segments[:, 0]  # (S, 2) each: x, y
    length2 = np.maximum(d[:, 0] ** 2 + d[:, 1] ** 2, 1e-9)  # (S,)
    reach = width / 2 + 0.5  # px: no ink farther than this from a segment
    first = np.floor((segments.min(1) - reach) * SS - 0.5).astype(int) - 1  # (S, 2): canvas column, row
    stop = np.ceil((segments.max(1) + reach) * SS - 0.5).astype(int) + 2  # (S, 2): one past the last
    first, stop = first.clip(0, SIZE * SS), stop.clip(0, SIZE * SS)
    dist2 = np.full(X.shape, np.inf)  # (64, 64): squared distance to the nearest segment within reach
    for (c0, r0), (c1, r1), (ax, ay), (dx, dy), l2 in zip(first, stop, start, d, length2):
        px, py = _XC[c0:c1] - ax, (_YC[r0:r1] - ay)[:, None]  # (w,), (h, 1): px from the segment's start
        t = np.clip((px * dx + py * dy) / l2, 0, 1)  # (h, w): the nearest point's place along the segment
        window = dist2[r0:r1, c0:c1]
        np.minimum(window, (px - t * dx) ** 2 + (py - t * dy) ** 2, out=window)
    return np.clip(reach - np.sqrt(dist2), 0, 1)


def bezier(points: np.ndarray, n: int = 8) -> np.ndarray:
    """A quadratic Bezier curve through control points (3, 2) as n segments (n, 2, 2)."""
    t = np.linspace(0, 1, n + 1)[:, None]
    curve = (1 - t) ** 2 * points[0] + 2 * t * (1 - t) * points[1] + t ** 2 * points[2]
    return np.stack([curve[:-1], curve[1:]], 1)


def pattern(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A (64, 64) pattern in [0, 1] over the whole canvas; periods of 3-8 output pixels."""
    period = rng.uniform(3, 8)
    theta = rng.uniform(0, np.pi)
    t = (X * np.cos(theta) + Y * np.sin(theta)) / period + rng.uniform()  # phase-shifted ramp
    n = (-X * np.sin(theta) + Y * np.cos(theta)) / period
    if kind == "solid":
        return np.zeros_like(X)
    if kind == "sine":
        return 0.5 + 0.5 * np.sin(2 * np.pi * t)
    if kind == "stripes":
        return (t % 1 < 0.5).astype(float)
    if kind == "checks":
        return ((np.floor(t) + np.floor(n)) % 2).astype(float)
    if kind == "dots":
        return (((t % 1) - 0.5) ** 2 + ((n % 1) - 0.5) ** 2 < 0.09).astype(float)
    if kind == "noise":
        return np.repeat(np.repeat(rng.uniform(size=(SIZE, SIZE)), SS, 0), SS, 1)
    if kind == "blobs":  # low-pass noise: a coarse random grid, bilinearly upsampled
        g = int(rng.integers(3, 7))
        coarse = rng.uniform(size=(g + 1, g + 1))
        gy, gx = Y / SIZE * g, X / SIZE * g
        y0, x0 = np.floor(gy).astype(int).clip(0, g - 1), np.floor(gx).astype(int).clip(0, g - 1)
        fy, fx = gy - y0, gx - x0
        top = coarse[y0, x0] * (1 - fx) + coarse[y0, x0 + 1] * fx
        bot = coarse[y0 + 1, x0] * (1 - fx) + coarse[y0 + 1, x0 + 1] * fx
        return top * (1 - fy) + bot * fy
    if kind == "linear_gradient":
        ramp = X * np.cos(theta) + Y * np.sin(theta)
        return (ramp - ramp.min()) / (ramp.max() - ramp.min())
    if kind == "radial_gradient":
        cx, cy = rng.uniform(0, SIZE, 2)
        return np.clip(np.hypot(X - cx, Y - cy) / (SIZE * 0.75), 0, 1)
    if kind == "rings":
        cx, cy = rng.uniform(0, SIZE, 2)
        return 0.5 + 0.5 * np.sin(2 * np.pi * np.hypot(X - cx, Y - cy) / period)
    if kind == "zigzag":
        tri = abs(2 * ((n * 1.5) % 1) - 1)  # triangle wave across the stripes
        return ((t + 0.5 * tri) % 1 < 0.5).astype(float)
    if kind == "crosshatch":
        t2 = (X * np.cos(theta + np.pi / 2) + Y * np.sin(theta + np.pi / 2)) / period
        return ((t % 1 < 0.25) | (t2 % 1 < 0.25)).astype(float)
    raise ValueError(f"unknown pattern {kind!r}")


def colour_pair(rng: np.random.Generator, min_dist: float = 0.45) -> tuple[np.ndarray, np.ndarray]:
    """Two random RGB colours at least min_dist apart (Euclidean, in [0, 1]^3)."""
    while True:
        a, b = rng.uniform(size=3), rng.uniform(size=3)
        if np.linalg.norm(a - b) >= min_dist:
            return a, b


def mix(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Blend a (where p=0) and b (where p=1), each a colour (3,) or a (64, 64, 3) canvas, into a (64, 64, 3) canvas:
    a * (1 - p) + b * p. Channel by channel, where broadcasting over a last axis of 3 would run numpy's inner loop
    three elements at a time (seven times slower here); the same arithmetic per element, so the same bytes."""
    q = 1 - p
    out = np.empty(p.shape + (3,))
    for c in range(3):
        out[..., c] = a[..., c] * q + b[..., c] * p
    return out


def finish(canvas: np.ndarray, rng: np.random.Generator, noise: float = 0.0) -> np.ndarray:
    """Box-filter the (64, 64, 3) canvas to (3, 32, 32) uint8, with optional pixel noise."""
    sub = canvas.reshape(SIZE, SS, SIZE, SS, 3)
    # the box's SS x SS samples summed one view at a time, row by row: the order numpy's mean over axes (1, 3) adds
    # them in, so the same bytes, without its reduction's inner loop over the last axis's 3 elements (3x faster)
    views = [sub[:, k, :, m] for k in range(SS) for m in range(SS)]  # (32, 32, 3) each
    img = views[0] + views[1]
    for v in views[2:]:
        img += v
    img /= SS * SS
    if noise:
        img = img + rng.normal(0, noise, img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(2, 0, 1)
