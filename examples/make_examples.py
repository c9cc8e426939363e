"""Build the example objects: everyday things made of primitives, y-up, in metres.

Each object is a union (by concatenation) of trimesh primitives — boxes, cylinders, cones,
spheres, tori and surfaces of revolution — with realistic proportions and a distinctive
silhouette, coloured per part. The script writes, for every object ``<name>``:

* ``meshes/<name>.ply`` — binary little-endian PLY: float32 x y z, uchar red green blue per
  vertex, triangles (int32 indices);
* ``points/<name>.ply`` — 2,048 surface points with unit normals (float32 x y z nx ny nz):
  10,000 uniform surface samples (:func:`clip2point.io.sample_surface`, seed 0) reduced to 2,048
  by farthest point sampling (:func:`clip2point.io.subsample`, seed 0) — the same recipe as
  ``load_point_cloud(mesh, num_points=2048, seed=0)``.

Objects stand on the floor (y = 0) with their front facing +z, so depth view 0 (elev 0,
azim 0) looks at the front. Everything is deterministic: re-running produces byte-identical
files (no timestamps, fixed seeds, PLY written by hand).

Usage::

    python examples/make_examples.py            # writes next to this script
    python examples/make_examples.py --out DIR  # writes DIR/meshes and DIR/points
"""
from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from clip2point.io import sample_surface, subsample

logger = logging.getLogger("make_examples")

NUM_POINTS = 2048
SURFACE_SAMPLES = 10_000
SEED = 0

# Colours (RGB 0..255).
WOOD = (150, 105, 65)
DARK_WOOD = (95, 62, 38)
OAK = (190, 145, 95)
WHITE = (235, 235, 232)
OFF_WHITE = (225, 222, 210)
GREY = (150, 150, 155)
DARK = (40, 40, 45)
BLACK = (20, 20, 22)
RED = (185, 40, 35)
BLUE = (50, 85, 160)
NAVY = (35, 50, 95)
GREEN = (40, 95, 55)
GOLD = (200, 165, 70)
CHROME = (190, 195, 200)
FABRIC = (105, 120, 140)
CREAM = (230, 215, 180)


@dataclass
class Part:
    """One coloured primitive: (n, 3) float64 vertices, (m, 3) int64 faces, an RGB colour."""

    vertices: np.ndarray
    faces: np.ndarray
    color: tuple[int, int, int]

    def moved(self, transform: np.ndarray) -> Part:
        v = self.vertices @ transform[:3, :3].T + transform[:3, 3]
        faces = self.faces if np.linalg.det(transform[:3, :3]) > 0 else self.faces[:, ::-1]
        return Part(v, faces, self.color)

    def warped(self, fn: Callable[[np.ndarray], np.ndarray]) -> Part:
        return Part(fn(self.vertices.copy()), self.faces, self.color)


def _part(mesh: trimesh.Trimesh, color: tuple[int, int, int]) -> Part:
    return Part(np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64), color)


def _translate(x: float, y: float, z: float) -> np.ndarray:
    t = np.eye(4)
    t[:3, 3] = (x, y, z)
    return t


def _rotate(axis: str, degrees: float) -> np.ndarray:
    vec = {"x": (1, 0, 0), "y": (0, 1, 0), "z": (0, 0, 1)}[axis]
    return trimesh.transformations.rotation_matrix(math.radians(degrees), vec)


def _scale(x: float, y: float, z: float) -> np.ndarray:
    return np.diag([x, y, z, 1.0])


def box(size: Sequence[float], center: Sequence[float], color: tuple[int, int, int]) -> Part:
    """An axis-aligned box of extents ``size`` (x, y, z) centred at ``center``."""
    return _part(trimesh.creation.box(extents=size), color).moved(_translate(*center))


def box_span(lo: Sequence[float], hi: Sequence[float], color: tuple[int, int, int]) -> Part:
    """An axis-aligned box from corner ``lo`` to corner ``hi``."""
    lo_a, hi_a = np.asarray(lo, float), np.asarray(hi, float)
    return box(hi_a - lo_a, (lo_a + hi_a) / 2, color)


_TO_AXIS = {"y": _rotate("x", -90.0), "z": np.eye(4), "x": _rotate("y", 90.0)}


def cylinder(radius: float, y0: float, y1: float, center_xz: Sequence[float] = (0.0, 0.0),
             color: tuple[int, int, int] = GREY, axis: str = "y", sections: int = 32) -> Part:
    """A cylinder along ``axis`` from coordinate ``y0`` to ``y1`` along that axis.

    ``center_xz`` gives the other two coordinates (for axis "y": x and z; "z": x and y; "x": y and z).
    """
    mesh = trimesh.creation.cylinder(radius=radius, height=y1 - y0, sections=sections)
    p = _part(mesh, color).moved(_TO_AXIS[axis])
    mid = (y0 + y1) / 2
    a, b = center_xz
    offset = {"y": (a, mid, b), "z": (a, b, mid), "x": (mid, a, b)}[axis]
    return p.moved(_translate(*offset))


def sphere(radius: float, center: Sequence[float], color: tuple[int, int, int],
           scale: Sequence[float] = (1.0, 1.0, 1.0), subdivisions: int = 2) -> Part:
    p = _part(trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius), color)
    return p.moved(_scale(*scale)).moved(_translate(*center))


def revolve(profile: Sequence[tuple[float, float]], color: tuple[int, int, int], sections: int = 48) -> Part:
    """A surface of revolution about the y axis; ``profile`` lists (radius, height) points."""
    mesh = trimesh.creation.revolve(np.asarray(profile, dtype=np.float64), sections=sections)
    return _part(mesh, color).moved(_TO_AXIS["y"])


def swept(part: Part, span_axis: int, root: float, sweep: float, taper: float, chord_axis: int = 2) -> Part:
    """Sweep and taper a box-like part: along ``span_axis`` away from ``root``, the chord
    (``chord_axis``) shifts by ``-sweep`` per metre and shrinks by ``taper`` per metre."""

    def fn(v: np.ndarray) -> np.ndarray:
        s = np.abs(v[:, span_axis] - root)
        centre = part.vertices[:, chord_axis].mean()
        v[:, chord_axis] = centre + (v[:, chord_axis] - centre) * (1.0 - taper * s) - sweep * s
        return v

    return part.warped(fn)


# --------------------------------------------------------------------------------------------
# the objects (metres, y-up, front = +z)


def chair() -> list[Part]:
    seat_h, w, d, leg = 0.45, 0.46, 0.44, 0.036
    parts = [box_span((-w / 2, seat_h - 0.045, -d / 2), (w / 2, seat_h, d / 2), WOOD)]
    for sx in (-1, 1):
        x = sx * (w / 2 - leg / 2)
        parts.append(box_span((x - leg / 2, 0, d / 2 - leg), (x + leg / 2, seat_h - 0.045, d / 2), DARK_WOOD))  # front leg
        parts.append(box_span((x - leg / 2, 0, -d / 2), (x + leg / 2, 0.92, -d / 2 + leg), DARK_WOOD))  # rear leg + post
    parts.append(box_span((-w / 2 + leg, 0.62, -d / 2 + 0.005), (w / 2 - leg, 0.90, -d / 2 + 0.03), WOOD))  # back panel
    for y in (0.12, 0.30):  # stretchers
        parts.append(box_span((-w / 2 + leg, y, -0.012 - d / 2 + leg), (w / 2 - leg, y + 0.025, -d / 2 + leg + 0.012), DARK_WOOD))
    return parts


def table() -> list[Part]:
    w, d, h, t, leg = 1.40, 0.80, 0.75, 0.035, 0.06
    parts = [box_span((-w / 2, h - t, -d / 2), (w / 2, h, d / 2), OAK)]
    inset = 0.06
    for sx in (-1, 1):
        for sz in (-1, 1):
            x, z = sx * (w / 2 - inset), sz * (d / 2 - inset)
            parts.append(box((leg, h - t, leg), (x, (h - t) / 2, z), DARK_WOOD))
    parts.append(box_span((-w / 2 + inset, h - t - 0.08, d / 2 - inset - 0.01), (w / 2 - inset, h - t, d / 2 - inset + 0.01), DARK_WOOD))
    parts.append(box_span((-w / 2 + inset, h - t - 0.08, -d / 2 + inset - 0.01), (w / 2 - inset, h - t, -d / 2 + inset + 0.01), DARK_WOOD))
    return parts


def mug() -> list[Part]:
    r, h, wall = 0.042, 0.098, 0.005
    body = revolve([(0, 0), (r - 0.003, 0), (r, 0.004), (r, h), (r - wall, h), (r - wall, 0.008), (0, 0.008)], RED)
    torus = trimesh.creation.torus(major_radius=0.030, minor_radius=0.0075, major_sections=40, minor_sections=16)
    handle = _part(torus, RED).moved(_scale(1.0, 1.25, 1.0)).moved(_translate(r + 0.008, 0.052, 0.0))
    keep = handle.vertices[handle.faces].mean(axis=1)[:, 0] > r - 0.002  # drop the half inside the wall
    handle = Part(handle.vertices, handle.faces[keep], RED)
    return [body, handle]


def airplane() -> list[Part]:
    # An airliner at 1:10 scale (A320-like: 37.6 m long, 35.8 m span, 11.8 m tall). Nose at +z.
    fuselage = revolve(
        [(0, -1.88), (0.06, -1.80), (0.14, -1.55), (0.20, -1.15), (0.20, 1.35), (0.18, 1.60),
         (0.13, 1.77), (0.06, 1.86), (0, 1.88)],
        WHITE, sections=40,
    ).moved(_rotate("x", 90.0))  # profile height runs along +z (nose)
    fuselage = fuselage.warped(lambda v: np.column_stack([v[:, 0], v[:, 1] + np.where(v[:, 2] < -1.1, (v[:, 2] + 1.1) * -0.12, 0.0), v[:, 2]]))
    parts = [fuselage]
    for sx in (-1, 1):
        wing = box_span((0.15 * sx if sx > 0 else -1.79, -0.14, -0.35), (1.79 if sx > 0 else -0.15, -0.10, 0.25), GREY)
        parts.append(swept(wing, 0, 0.15 * sx, sweep=0.42, taper=0.42))
        stab = box_span((0.08 * sx if sx > 0 else -0.66, 0.06, -1.80), (0.66 if sx > 0 else -0.08, 0.08, -1.52), GREY)
        parts.append(swept(stab, 0, 0.08 * sx, sweep=0.3, taper=0.8))
        engine = cylinder(0.085, -0.28, 0.12, center_xz=(0.55 * sx, -0.26), color=CHROME, axis="z", sections=24)
        pylon = box_span((0.55 * sx - 0.012, -0.20, -0.15), (0.55 * sx + 0.012, -0.12, 0.05), GREY)
        parts += [engine, pylon]
    fin = box_span((-0.02, 0.12, -1.87), (0.02, 0.95, -1.38), BLUE)
    parts.append(swept(fin, 1, 0.12, sweep=0.35, taper=0.65))
    return parts


def bottle() -> list[Part]:
    prof = [(0, 0), (0.035, 0), (0.038, 0.006), (0.038, 0.19), (0.034, 0.215), (0.024, 0.235),
            (0.0145, 0.252), (0.0145, 0.285), (0.0165, 0.288), (0.0165, 0.30), (0, 0.30)]
    glass = revolve(prof, GREEN)
    cap = cylinder(0.0168, 0.268, 0.301, color=GOLD)
    label = cylinder(0.0385, 0.07, 0.16, color=CREAM, sections=48)
    return [glass, cap, label]


def lamp() -> list[Part]:
    base = revolve([(0, 0), (0.16, 0), (0.16, 0.02), (0.12, 0.04), (0, 0.04)], DARK)
    pole = cylinder(0.013, 0.04, 1.42, color=CHROME, sections=20)
    shade = revolve([(0.22, 1.30), (0.13, 1.62), (0.125, 1.62), (0.215, 1.30)], CREAM, sections=48)
    socket = cylinder(0.025, 1.38, 1.46, color=DARK, sections=20)
    bulb = sphere(0.045, (0, 1.50, 0), WHITE)
    return [base, pole, shade, socket, bulb]


def bed() -> list[Part]:
    w, L = 1.60, 2.10
    parts = [box_span((-w / 2, 0.10, -L / 2), (w / 2, 0.33, L / 2), WOOD)]
    for sx in (-1, 1):
        for sz in (-1, 1):
            parts.append(box((0.07, 0.10, 0.07), (sx * (w / 2 - 0.05), 0.05, sz * (L / 2 - 0.05)), DARK_WOOD))
    parts.append(box_span((-w / 2 + 0.05, 0.33, -L / 2 + 0.06), (w / 2 - 0.05, 0.55, L / 2 - 0.04), WHITE))  # mattress
    parts.append(box_span((-w / 2 + 0.03, 0.36, -L / 2 + 0.75), (w / 2 - 0.03, 0.575, L / 2 - 0.02), BLUE))  # duvet
    parts.append(box_span((-w / 2, 0.0, -L / 2 - 0.06), (w / 2, 1.05, -L / 2), DARK_WOOD))  # headboard
    parts.append(box_span((-w / 2, 0.0, L / 2), (w / 2, 0.50, L / 2 + 0.05), DARK_WOOD))  # footboard
    for sx in (-1, 1):
        parts.append(sphere(1.0, (sx * 0.37, 0.61, -L / 2 + 0.32), OFF_WHITE, scale=(0.32, 0.07, 0.2)))  # pillows
    return parts


def guitar() -> list[Part]:
    # Acoustic guitar standing upright, top facing +z: body 0.50 m, total 1.04 m.
    depth = 0.10
    lower = cylinder(0.19, -depth / 2, depth / 2, center_xz=(0.0, 0.20), color=OAK, axis="z", sections=48)
    upper = cylinder(0.145, -depth / 2, depth / 2, center_xz=(0.0, 0.39), color=OAK, axis="z", sections=48)
    hole = cylinder(0.045, depth / 2 - 0.001, depth / 2 + 0.002, center_xz=(0.0, 0.36), color=BLACK, axis="z")
    bridge = box((0.14, 0.025, 0.012), (0.0, 0.13, depth / 2 + 0.004), DARK_WOOD)
    neck = box_span((-0.026, 0.50, 0.005), (0.026, 0.92, 0.035), DARK_WOOD)
    fret = box_span((-0.025, 0.50, 0.035), (0.025, 0.92, 0.042), BLACK)
    head = box_span((-0.042, 0.92, 0.0), (0.042, 1.10, 0.018), DARK_WOOD).moved(_translate(0, -0.92, 0)).moved(
        _rotate("x", -12.0)).moved(_translate(0, 0.92, 0.01))
    parts = [lower, upper, hole, bridge, neck, fret, head]
    for sx in (-1, 1):
        for y in (0.96, 1.01, 1.06):
            z = 0.019 - (y - 0.92) * math.tan(math.radians(12.0))  # on the tilted headstock
            parts.append(cylinder(0.006, 0.0, 0.03, center_xz=(y, z), color=CHROME, axis="x", sections=12).moved(
                _translate(sx * 0.042 + (0 if sx > 0 else -0.03), 0, 0)))
    return parts


def sofa() -> list[Part]:
    w, d = 2.0, 0.90
    parts = [box_span((-w / 2 + 0.15, 0.10, -d / 2), (w / 2 - 0.15, 0.36, d / 2), FABRIC)]  # base
    for i in range(3):  # seat cushions
        x0 = -w / 2 + 0.15 + i * (w - 0.30) / 3
        parts.append(box_span((x0 + 0.01, 0.36, -d / 2 + 0.22), (x0 + (w - 0.30) / 3 - 0.01, 0.50, d / 2 - 0.01), FABRIC))
    parts.append(box_span((-w / 2 + 0.15, 0.10, -d / 2), (w / 2 - 0.15, 0.86, -d / 2 + 0.22), FABRIC))  # back
    for i in range(3):  # back cushions
        x0 = -w / 2 + 0.15 + i * (w - 0.30) / 3
        parts.append(box_span((x0 + 0.02, 0.50, -d / 2 + 0.20), (x0 + (w - 0.30) / 3 - 0.02, 0.82, -d / 2 + 0.34), FABRIC))
    for sx in (-1, 1):  # armrests
        parts.append(box_span((sx * w / 2 - (0.16 if sx > 0 else 0), 0.10, -d / 2), (sx * w / 2 + (0 if sx > 0 else 0.16), 0.64, d / 2), FABRIC))
        for sz in (-1, 1):
            parts.append(cylinder(0.025, 0.0, 0.10, center_xz=(sx * (w / 2 - 0.08), sz * (d / 2 - 0.08)), color=DARK_WOOD, sections=16))
    return parts


def monitor() -> list[Part]:
    w, h, y0 = 0.62, 0.37, 0.17
    bezel = box_span((-w / 2, y0, -0.015), (w / 2, y0 + h, 0.012), BLACK)
    screen = box_span((-w / 2 + 0.012, y0 + 0.02, 0.012), (w / 2 - 0.012, y0 + h - 0.012, 0.014), NAVY)
    back = box_span((-0.15, y0 + 0.08, -0.045), (0.15, y0 + 0.28, -0.015), DARK)
    neck = box_span((-0.03, 0.012, -0.075), (0.03, y0 + 0.20, -0.045), CHROME)
    base = box_span((-0.13, 0.0, -0.20), (0.13, 0.012, 0.02), CHROME)
    return [bezel, screen, back, neck, base]


def bathtub() -> list[Part]:
    # A freestanding roll-top tub on four feet: 1.70 m long (x), 0.75 m wide, rim at 0.60 m.
    shell = revolve(
        [(0, 0.14), (0.80, 0.14), (0.93, 0.25), (0.99, 0.55), (1.0, 0.60), (0.93, 0.60), (0.92, 0.55),
         (0.86, 0.27), (0.75, 0.20), (0, 0.20)],
        WHITE, sections=64,
    ).moved(_scale(0.85, 1.0, 0.375))
    parts = [shell]
    for sx in (-1, 1):
        for sz in (-1, 1):
            parts.append(sphere(1.0, (sx * 0.5, 0.075, sz * 0.17), GOLD, scale=(0.05, 0.075, 0.05)))
    parts.append(cylinder(0.016, 0.58, 0.78, center_xz=(0.81, 0.0), color=CHROME, sections=16))  # tap
    parts.append(cylinder(0.013, 0.66, 0.81, center_xz=(0.765, 0.0), color=CHROME, axis="x", sections=16))
    return parts


def toilet() -> list[Part]:
    bowl = revolve(
        [(0, 0), (0.12, 0), (0.10, 0.14), (0.13, 0.26), (0.185, 0.37), (0.19, 0.39), (0.16, 0.39),
         (0.11, 0.27), (0.06, 0.20), (0, 0.19)],
        WHITE, sections=48,
    ).moved(_scale(1.0, 1.0, 1.3)).moved(_translate(0, 0, 0.05))
    seat = _part(trimesh.creation.annulus(r_min=0.12, r_max=0.195, height=0.022, sections=48), OFF_WHITE)
    seat = seat.moved(_TO_AXIS["y"]).moved(_scale(1.0, 1.0, 1.3)).moved(_translate(0, 0.401, 0.05))
    tank = box_span((-0.21, 0.38, -0.37), (0.21, 0.76, -0.17), WHITE)
    lid = box_span((-0.22, 0.76, -0.38), (0.22, 0.785, -0.16), OFF_WHITE)
    button = cylinder(0.02, 0.785, 0.795, center_xz=(0.0, -0.27), color=CHROME, sections=16)
    back = box_span((-0.08, 0.12, -0.22), (0.08, 0.385, -0.05), WHITE)  # bowl's rear under the tank
    return [bowl, seat, tank, lid, button, back]


def bookshelf() -> list[Part]:
    w, h, d, t = 0.80, 1.80, 0.30, 0.02
    parts = [
        box_span((-w / 2, 0, -d / 2), (-w / 2 + t, h, d / 2), WOOD),
        box_span((w / 2 - t, 0, -d / 2), (w / 2, h, d / 2), WOOD),
        box_span((-w / 2, h - t, -d / 2), (w / 2, h, d / 2), WOOD),
        box_span((-w / 2, 0, -d / 2), (w / 2, 0.06, d / 2), WOOD),
        box_span((-w / 2, 0, -d / 2), (w / 2, h, -d / 2 + 0.008), DARK_WOOD),
    ]
    shelves = [0.06, 0.40, 0.75, 1.10, 1.45]
    for y in shelves[1:]:
        parts.append(box_span((-w / 2 + t, y - t, -d / 2), (w / 2 - t, y, d / 2), WOOD))
    rng = np.random.default_rng(7)
    palette = [RED, BLUE, GREEN, NAVY, GOLD, CREAM, DARK]
    for y in shelves:
        x = -w / 2 + t + 0.01
        stop = w / 2 - t - (0.05 + 0.2 * rng.random())
        while x < stop:
            bw = 0.02 + 0.025 * rng.random()
            bh = 0.18 + 0.1 * rng.random()
            bd = 0.16 + 0.07 * rng.random()
            color = palette[int(rng.integers(len(palette)))]
            parts.append(box_span((x, y, -d / 2 + 0.01), (x + bw, y + bh, -d / 2 + 0.01 + bd), color))
            x += bw + 0.002
    return parts


def laptop() -> list[Part]:
    w, d, t = 0.34, 0.24, 0.018
    base = box_span((-w / 2, 0, -d / 2), (w / 2, t, d / 2), GREY)
    keys = box_span((-w / 2 + 0.02, t, -d / 2 + 0.02), (w / 2 - 0.02, t + 0.002, 0.02), DARK)
    pad = box_span((-0.05, t, 0.04), (0.05, t + 0.001, 0.10), DARK)
    hinge = _translate(0, t, -d / 2) @ _rotate("x", -15.0)  # lid opened 105° from closed
    lid = box_span((-w / 2, 0, -0.008), (w / 2, d, 0.0), GREY).moved(hinge)
    screen = box_span((-w / 2 + 0.012, 0.012, 0.0), (w / 2 - 0.012, d - 0.015, 0.002), NAVY).moved(hinge)
    return [base, keys, pad, lid, screen]


#: name → builder; order is the README's.
OBJECTS: dict[str, Callable[[], list[Part]]] = {
    "airplane": airplane,
    "bathtub": bathtub,
    "bed": bed,
    "bookshelf": bookshelf,
    "bottle": bottle,
    "chair": chair,
    "guitar": guitar,
    "lamp": lamp,
    "laptop": laptop,
    "monitor": monitor,
    "mug": mug,
    "sofa": sofa,
    "table": table,
    "toilet": toilet,
}


# --------------------------------------------------------------------------------------------
# assembling and writing


def assemble(parts: list[Part]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate parts, lift them onto the floor (min y = 0) → (float32 vertices (V, 3),
    int64 faces (F, 3), uint8 colours (V, 3))."""
    vertices, faces, colors, offset = [], [], [], 0
    for p in parts:
        vertices.append(p.vertices)
        faces.append(p.faces + offset)
        colors.append(np.tile(np.asarray(p.color, dtype=np.uint8), (len(p.vertices), 1)))
        offset += len(p.vertices)
    v = np.concatenate(vertices)
    v[:, 1] -= v[:, 1].min()  # stand on the floor
    v = np.round(v, 6).astype(np.float32) + np.float32(0.0)  # +0.0: no "-0.0"
    return v, np.concatenate(faces).astype(np.int64), np.concatenate(colors)


def build(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mesh of example ``name``: (vertices float32 metres y-up, faces int64, colours uint8)."""
    return assemble(OBJECTS[name]())


def sample_points(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2,048 surface points and unit normals (float32), deterministic."""
    pts, nrm = sample_surface(vertices, faces, SURFACE_SAMPLES, seed=SEED, return_normals=True)
    keep = subsample(pts, NUM_POINTS, "fps", seed=SEED)
    return pts[keep].astype(np.float32), nrm[keep].astype(np.float32)


def _ply_header(comment: str, vertex_count: int, vertex_props: list[str], face_count: int | None) -> bytes:
    lines = ["ply", "format binary_little_endian 1.0", f"comment {comment}", f"element vertex {vertex_count}"]
    lines += [f"property {p}" for p in vertex_props]
    if face_count is not None:
        lines += [f"element face {face_count}", "property list uchar int vertex_indices"]
    lines.append("end_header")
    return ("\n".join(lines) + "\n").encode("ascii")


def write_mesh_ply(path: Path, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray, comment: str) -> None:
    vdt = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    vrec = np.empty(len(vertices), dtype=vdt)
    for i, k in enumerate("xyz"):
        vrec[k] = vertices[:, i]
    for i, k in enumerate("rgb"):
        vrec[k] = colors[:, i]
    fdt = np.dtype([("n", "u1"), ("i", "<i4", (3,))])
    frec = np.empty(len(faces), dtype=fdt)
    frec["n"] = 3
    frec["i"] = faces
    props = ["float x", "float y", "float z", "uchar red", "uchar green", "uchar blue"]
    path.write_bytes(_ply_header(comment, len(vertices), props, len(faces)) + vrec.tobytes() + frec.tobytes())


def write_points_ply(path: Path, points: np.ndarray, normals: np.ndarray, comment: str) -> None:
    data = np.concatenate([points, normals], axis=1).astype("<f4")
    props = ["float x", "float y", "float z", "float nx", "float ny", "float nz"]
    path.write_bytes(_ply_header(comment, len(points), props, None) + data.tobytes())


def write_examples(out: Path, names: Sequence[str] | None = None) -> list[Path]:
    """Write ``out/meshes/<name>.ply`` and ``out/points/<name>.ply``; returns the written paths."""
    written = []
    (out / "meshes").mkdir(parents=True, exist_ok=True)
    (out / "points").mkdir(parents=True, exist_ok=True)
    for name in names or OBJECTS:
        v, f, c = build(name)
        mesh_path = out / "meshes" / f"{name}.ply"
        write_mesh_ply(mesh_path, v, f, c, f"clip2point example '{name}': metres, y-up, front +z; examples/make_examples.py")
        pts, nrm = sample_points(v, f)
        pts_path = out / "points" / f"{name}.ply"
        write_points_ply(pts_path, pts, nrm, f"clip2point example '{name}': {NUM_POINTS} surface points, metres, y-up")
        extent = v.max(axis=0) - v.min(axis=0)
        logger.info("%-10s %5d vertices %5d faces  extent x %.2f y %.2f z %.2f m", name, len(v), len(f), *extent)
        written += [mesh_path, pts_path]
    return written


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="output folder (default: examples/)")
    parser.add_argument("names", nargs="*", help=f"objects to build (default: all of {', '.join(OBJECTS)})")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(OBJECTS))
    if unknown:
        parser.error(f"unknown object(s) {', '.join(unknown)}; choose from {', '.join(OBJECTS)}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    write_examples(args.out, args.names or None)


if __name__ == "__main__":
    main()
