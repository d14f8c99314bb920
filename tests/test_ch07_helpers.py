"""Chapter 07 helpers: one-object scenes whose captions name every attribute, and held-out pairs."""

import numpy as np
import pytest
import torch

from ssledu.data import scenes, toyworld


@pytest.fixture(scope="module")
def data():
    return scenes.load_scenes(200, seed=3)


def test_shapes_ranges_and_determinism(data):
    assert data["images"].shape == (200, 3, 32, 32) and data["images"].dtype == torch.float32
    assert 0.0 <= float(data["images"].min()) and float(data["images"].max()) <= 1.0
    again = scenes.load_scenes(200, seed=3)
    assert torch.equal(again["images"], data["images"]) and again["captions"] == data["captions"]
    assert scenes.load_scenes(200, seed=4)["captions"] != data["captions"]


def test_caption_names_the_labels_and_the_pixels_agree(data):
    names = data["names"]
    for i in range(200):
        words = {a: names[a][data["labels"][a][i]] for a in scenes.ATTRIBUTES}
        assert data["captions"][i] == f"a {words['size']} {words['colour']} {words['shape']} at the {words['position']}"
        # the object's colour is in the image, in the quadrant the caption names
        rgb = torch.tensor(toyworld.COLOUR_RGB[words["colour"]], dtype=torch.float32) / 255
        hit = (data["images"][i] - rgb[:, None, None]).abs().sum(0) < 1e-4  # (32, 32) object pixels
        ys, xs = torch.nonzero(hit, as_tuple=True)
        assert len(ys) > 0
        top, left = words["position"].split()
        assert (ys.float().mean() < 16) == (top == "top") and (xs.float().mean() < 16) == (left == "left")


def test_every_attribute_value_occurs(data):
    for a in scenes.ATTRIBUTES:
        assert set(np.unique(data["labels"][a])) == set(range(len(data["names"][a])))


def test_combination_mask(data):
    m = scenes.combination_mask(data, [("red", "triangle"), ("blue", "star")])
    c, s = data["labels"]["colour"], data["labels"]["shape"]
    names = data["names"]
    expected = ((c == names["colour"].index("red")) & (s == names["shape"].index("triangle"))) | (
        (c == names["colour"].index("blue")) & (s == names["shape"].index("star")))
    assert m.dtype == bool and np.array_equal(m, expected) and 0 < m.sum() < 200
    with pytest.raises(ValueError, match="not a \\(colour, shape\\) pair"):
        scenes.combination_mask(data, [("red", "hexagon")])


def test_position_name():
    assert scenes.position_name(3, 5) == "top left"
    assert scenes.position_name(20, 5) == "top right"
    assert scenes.position_name(3, 17) == "bottom left"
    assert scenes.position_name(16, 16) == "bottom right"
