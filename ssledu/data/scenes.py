"""One-object toyworld scenes as an image-text corpus whose every attribute is known.

``toyworld.generate_scenes`` draws the pictures; here each scene holds exactly one shape,
and its caption names all four of its attributes, the position included::

    "a big red circle at the top left"

so a model trained on (image, caption) pairs can be asked about each attribute alone
(zero-shot, from prompts) and checked against the exact answer, and attribute combinations
can be held out of training (``combination_mask``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ATTRIBUTES", "POSITIONS", "position_name", "scene_caption", "load_scenes", "combination_mask"]

ATTRIBUTES = ("colour", "shape", "size", "position")
POSITIONS = ("top left", "top right", "bottom left", "bottom right")
"""The quadrant of the 2 x 2 grid an object sits in (``generate_scenes`` puts it in one cell)."""


def position_name(x: float, y: float, image_size: int = 32) -> str:
    """The quadrant of a centre (x, y) in pixels, image y growing down: "top left", ..."""
    half = image_size / 2
    return ("top" if y < half else "bottom") + " " + ("left" if x < half else "right")


def scene_caption(obj: dict, position: str) -> str:
    """"a {size} {colour} {shape} at the {position}" for one object of ``generate_scenes``."""
    return f"a {obj['size']} {obj['colour']} {obj['shape']} at the {position}"


def load_scenes(n: int, seed: int = 0, *, world=None, image_size: int = 32) -> dict:
    """``n`` one-object scenes, deterministic in ``seed``.

    Returns ``images``: float32 torch tensor (n, 3, image_size, image_size) in [0, 1];
    ``captions``: list of n str; ``labels``: dict attribute -> int64 numpy array (n,) of
    indices into ``names[attribute]``; ``names``: dict attribute -> tuple of words (the
    world's colours, shapes and sizes, and ``POSITIONS``). Default world: toyworld's
    6 colours x 5 shapes x 3 sizes, and 4 positions (360 distinct captions).
    """
    import torch

    from ssledu.data import toyworld

    base = world if world is not None else toyworld.World()
    if base.max_objects != 1:
        from dataclasses import replace

        base = replace(base, max_objects=1)
    scenes = toyworld.generate_scenes(n, seed=seed, world=base, size=image_size)
    objects = [a["objects"][0] for a in scenes["attributes"]]
    positions = [position_name(*o["position"], image_size=image_size) for o in objects]
    names = {"colour": base.colours, "shape": base.shapes, "size": base.sizes, "position": POSITIONS}
    values = {"colour": [o["colour"] for o in objects], "shape": [o["shape"] for o in objects],
              "size": [o["size"] for o in objects], "position": positions}
    labels = {a: np.array([names[a].index(v) for v in values[a]], dtype=np.int64) for a in ATTRIBUTES}
    images = torch.from_numpy(scenes["images"]).permute(0, 3, 1, 2).float() / 255.0  # (n, 3, H, W)
    captions = [scene_caption(o, p) for o, p in zip(objects, positions)]
    return {"images": images.contiguous(), "captions": captions, "labels": labels, "names": names}


def combination_mask(scenes: dict, pairs, attributes=("colour", "shape")) -> np.ndarray:
    """Boolean (n,): True for the scenes whose two attributes form one of ``pairs``.

    e.g. ``combination_mask(s, [("red", "triangle")])`` marks every red triangle.
    """
    a, b = attributes
    for x, y in pairs:
        if x not in scenes["names"][a] or y not in scenes["names"][b]:
            raise ValueError(
                f"({x!r}, {y!r}) is not a ({a}, {b}) pair of these scenes; {a}s: {scenes['names'][a]}, "
                f"{b}s: {scenes['names'][b]}"
            )
    wanted = {(scenes["names"][a].index(x), scenes["names"][b].index(y)) for x, y in pairs}
    return np.array([(i, j) in wanted for i, j in zip(scenes["labels"][a], scenes["labels"][b])], dtype=bool)
