"""Seeded synthetic scenes of coloured, patterned, nested and occluding shapes.

A scene is a textured background with a few "whole" objects drawn in order, so later ones occlude
earlier ones. A whole may contain a "part", which may contain a "subpart" (a blue square holding a
yellow circle holding a small red square), so one click on the subpart has three valid answers.
Each object keeps only its visible mask; :func:`whole_masks` rebuilds the nested hierarchy.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (245, 220, 40),
    "green": (40, 170, 60),
    "cyan": (40, 210, 225),
    "blue": (40, 70, 225),
    "purple": (150, 50, 200),
    "white": (248, 248, 248),
}
SHAPES: tuple[str, ...] = ("circle", "ellipse", "square", "triangle", "diamond", "star", "ring")
PATTERNS: tuple[str, ...] = ("plain", "striped", "dotted")
LEVELS: tuple[str, ...] = ("whole", "part", "subpart")
BACKGROUNDS: tuple[str, ...] = ("gradient", "noise", "stripes", "checker")

_RING_INNER = 0.55
_PATTERN_SHADE = 0.4


def caption(colour: str, shape: str, pattern: str = "plain") -> str:
    """'red circle', 'blue striped square': the pattern word is left out when plain."""
    return f"{colour} {shape}" if pattern == "plain" else f"{colour} {pattern} {shape}"


def all_captions() -> list[str]:
    """Every caption a scene can contain: len(COLOURS) * len(PATTERNS) * len(SHAPES)."""
    return [caption(c, s, p) for c in COLOURS for p in PATTERNS for s in SHAPES]


@dataclass
class SceneObject:
    """One object: ``mask`` (H, W) bool is what is visible after occlusion by everything above
    it, including its own parts; ``parent`` is the index of the enclosing object, if any."""

    mask: np.ndarray
    caption: str
    shape: str
    colour: str
    pattern: str
    level: str
    parent: int | None


@dataclass
class Scene:
    """``image`` (H, W, 3) uint8; ``objects`` in drawing order (a parent precedes its parts)."""

    image: np.ndarray
    objects: list[SceneObject]
    background: str


def whole_masks(scene: Scene) -> np.ndarray:
    """(N, H, W) bool: each object's visible mask united with those of all its descendants."""
    masks = np.zeros((len(scene.objects), *scene.image.shape[:2]), dtype=bool)
    for index, obj in enumerate(scene.objects):
        masks[index] = obj.mask
    for index in range(len(scene.objects) - 1, -1, -1):
        parent = scene.objects[index].parent
        if parent is not None:
            masks[parent] |= masks[index]
    return masks


def ancestors(scene: Scene, index: int) -> list[int]:
    """[index, parent, grandparent, ...]: the objects a click on ``index`` could mean."""
    chain = [index]
    while (parent := scene.objects[chain[-1]].parent) is not None:
        chain.append(parent)
    return chain


@dataclass
class _Placement:
    shape: str
    centre: tuple[float, float]
    radius: float
    angle: float

    def mask(self, size: int, scale: float = 1.0) -> np.ndarray:
        """(size, size) bool raster of the shape, optionally shrunk about its centre."""
        canvas = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(canvas)
        cx, cy = self.centre
        r = self.radius * scale
        if self.shape in ("circle", "ring"):
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=1)
            if self.shape == "ring":
                ri = r * _RING_INNER
                draw.ellipse((cx - ri, cy - ri, cx + ri, cy + ri), fill=0)
        else:
            cos, sin = math.cos(self.angle), math.sin(self.angle)
            outline = _OUTLINES[self.shape] * r
            xs = cx + outline[:, 0] * cos - outline[:, 1] * sin
            ys = cy + outline[:, 0] * sin + outline[:, 1] * cos
            draw.polygon(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=1)
        return np.asarray(canvas, dtype=bool)


def _regular(count: int, radii: tuple[float, ...], squash: float = 1.0) -> np.ndarray:
    angles = -math.pi / 2 + np.arange(count) * 2 * math.pi / count
    r = np.resize(np.asarray(radii), count)
    return np.stack([r * np.cos(angles), squash * r * np.sin(angles)], axis=1)


_OUTLINES: dict[str, np.ndarray] = {
    "ellipse": _regular(48, (1.0,), squash=0.6),
    "square": np.array([[-0.8, -0.8], [0.8, -0.8], [0.8, 0.8], [-0.8, 0.8]]),
    "triangle": _regular(3, (1.0,)),
    "diamond": np.array([[0.0, -1.0], [0.65, 0.0], [0.0, 1.0], [-0.65, 0.0]]),
    "star": _regular(10, (1.0, 0.45)),
}


@dataclass
class _Draft:
    placement: _Placement
    full_mask: np.ndarray
    colour: str
    pattern: str
    pattern_angle: float
    pattern_offset: tuple[float, float]
    level: str
    parent: int | None


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return xs, ys


def _random_angle(rng: np.random.Generator, shape: str) -> float:
    if shape in ("square", "diamond"):
        return float(rng.uniform(-math.pi / 9, math.pi / 9))
    return float(rng.uniform(0, 2 * math.pi))


def _pick_colour(rng: np.random.Generator, full_mask: np.ndarray, drafts: list[_Draft]) -> str:
    """A colour unlike that of any object the new one touches, so every boundary shows."""
    taken = {d.colour for d in drafts if (d.full_mask & full_mask).any()}
    choices = [c for c in COLOURS if c not in taken] or list(COLOURS)
    return choices[rng.integers(len(choices))]


def _add_draft(
    rng: np.random.Generator,
    drafts: list[_Draft],
    placement: _Placement,
    full_mask: np.ndarray,
    level: str,
    parent: int | None,
    pattern_min_radius: float,
) -> int:
    patterned = placement.radius >= pattern_min_radius
    pattern = PATTERNS[rng.integers(len(PATTERNS))] if patterned else "plain"
    drafts.append(
        _Draft(
            placement=placement,
            full_mask=full_mask,
            colour=_pick_colour(rng, full_mask, drafts),
            pattern=pattern,
            pattern_angle=float(rng.uniform(0, math.pi)),
            pattern_offset=(float(rng.uniform(0, 100)), float(rng.uniform(0, 100))),
            level=level,
            parent=parent,
        )
    )
    return len(drafts) - 1


def _place_child(
    rng: np.random.Generator, parent: _Draft, size: int, min_radius: float, tries: int = 6
) -> tuple[_Placement, np.ndarray] | None:
    """A shape lying inside the parent shrunk by 15% (so a rim of the parent stays visible)."""
    inner = parent.placement.mask(size, scale=0.85)
    px, py = parent.placement.centre
    for _ in range(tries):
        radius = parent.placement.radius * rng.uniform(0.42, 0.58)
        if radius < min_radius:
            return None
        shape = SHAPES[rng.integers(len(SHAPES))]
        reach = (parent.placement.radius - radius) * 0.35
        dx, dy = rng.uniform(-reach, reach, size=2)
        placement = _Placement(shape, (px + dx, py + dy), radius, _random_angle(rng, shape))
        mask = placement.mask(size)
        if mask.any() and not (mask & ~inner).any():
            return placement, mask
    return None


def _visible_masks(full_masks: list[np.ndarray]) -> list[np.ndarray]:
    """Each mask minus everything drawn after it."""
    if not full_masks:
        return []
    covered = np.zeros_like(full_masks[0])
    visible = []
    for mask in reversed(full_masks):
        visible.append(mask & ~covered)
        covered |= mask
    return visible[::-1]


def _muted_colour(rng: np.random.Generator) -> np.ndarray:
    rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.05, 0.3), rng.uniform(0.25, 0.6))
    return np.array(rgb, dtype=np.float32) * 255


def _background(rng: np.random.Generator, size: int) -> tuple[str, np.ndarray]:
    """A muted texture: (kind, (H, W, 3) float32 image)."""
    kind = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    xs, ys = _grid(size)
    angle = rng.uniform(0, 2 * math.pi)
    along = (xs * math.cos(angle) + ys * math.sin(angle)) / size
    if kind == "gradient":
        mix = (along - along.min()) / max(float(np.ptp(along)), 1e-6)
    elif kind == "noise":
        cells = int(rng.integers(3, 9))
        coarse = Image.fromarray(rng.random((cells, cells), dtype=np.float32), mode="F")
        mix = np.asarray(coarse.resize((size, size), Image.BILINEAR))
    elif kind == "stripes":
        mix = 0.5 + 0.5 * np.sin(2 * math.pi * along * rng.uniform(3, 10))
    else:
        cell = size / rng.uniform(3, 8)
        mix = ((xs // cell + ys // cell) % 2).astype(np.float32)
    first, second = _muted_colour(rng), _muted_colour(rng)
    image = first + mix[..., None] * (second - first)
    return kind, image


def _paint(image: np.ndarray, draft: _Draft, size: int) -> None:
    """Fill ``draft.full_mask`` in ``image`` (H, W, 3) with the draft's colour and pattern."""
    base = np.array(COLOURS[draft.colour], dtype=np.float32)
    mask = draft.full_mask
    if draft.pattern == "plain":
        image[mask] = base
        return
    xs, ys = _grid(size)
    period = max(4.0, size / 18)
    ox, oy = draft.pattern_offset
    if draft.pattern == "striped":
        cos, sin = math.cos(draft.pattern_angle), math.sin(draft.pattern_angle)
        marked = ((xs * cos + ys * sin + ox) % period) < period / 2
    else:
        dx = (xs + ox) % period - period / 2
        dy = (ys + oy) % period - period / 2
        marked = dx * dx + dy * dy < (0.28 * period) ** 2
    image[mask] = np.where(marked[mask][:, None], base * _PATTERN_SHADE, base)


def generate_scene(
    rng: np.random.Generator,
    size: int = 128,
    max_wholes: int = 5,
    part_probability: float = 0.5,
    subpart_probability: float = 0.6,
    min_visible_area: int | None = None,
    grain: float = 3.0,
) -> Scene:
    """A random scene of ``size`` x ``size`` pixels with 2..``max_wholes`` whole objects.

    Objects whose visible area is under ``min_visible_area`` (default 0.2% of the image) are
    dropped together with their descendants, and the scene is redrawn without them.
    """
    min_area = round(0.002 * size * size) if min_visible_area is None else min_visible_area
    min_child_radius = 0.045 * size
    pattern_min_radius = 0.08 * size
    drafts: list[_Draft] = []
    for _ in range(int(rng.integers(2, max_wholes + 1))):
        nested = rng.random() < part_probability
        radius = size * (rng.uniform(0.2, 0.3) if nested else rng.uniform(0.08, 0.2))
        shape = SHAPES[rng.integers(len(SHAPES))]
        centre = rng.uniform(0.1 * size, 0.9 * size, size=2)
        placement = _Placement(
            shape, (float(centre[0]), float(centre[1])), float(radius), _random_angle(rng, shape)
        )
        parent = _add_draft(
            rng, drafts, placement, placement.mask(size), "whole", None, pattern_min_radius
        )
        for level, probability in (("part", 1.0), ("subpart", subpart_probability)):
            if not nested or rng.random() >= probability:
                break
            child = _place_child(rng, drafts[parent], size, min_child_radius)
            if child is None:
                break
            parent = _add_draft(rng, drafts, *child, level, parent, pattern_min_radius)

    kept = list(range(len(drafts)))
    while True:
        visible = _visible_masks([drafts[i].full_mask for i in kept])
        small = {i for i, mask in zip(kept, visible, strict=True) if mask.sum() < min_area}
        if not small:
            break
        for i in kept:
            if drafts[i].parent in small:
                small.add(i)
        kept = [i for i in kept if i not in small]

    kind, canvas = _background(rng, size)
    for i in kept:
        _paint(canvas, drafts[i], size)
    if grain > 0:
        canvas += rng.normal(0.0, grain, size=(size, size, 1)).astype(np.float32)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)

    new_index = {old: new for new, old in enumerate(kept)}
    objects = [
        SceneObject(
            mask=mask,
            caption=caption(d.colour, d.placement.shape, d.pattern),
            shape=d.placement.shape,
            colour=d.colour,
            pattern=d.pattern,
            level=d.level,
            parent=None if d.parent is None else new_index[d.parent],
        )
        for d, mask in zip((drafts[i] for i in kept), visible, strict=True)
    ]
    return Scene(image=image, objects=objects, background=kind)


def scene_dataset(seed: int, count: int, size: int = 128) -> Iterator[Scene]:
    """``count`` scenes; scene ``i`` is ``generate_scene(np.random.default_rng((seed, i)), size)``,
    so any one can be regenerated alone."""
    for index in range(count):
        yield generate_scene(np.random.default_rng((seed, index)), size)
