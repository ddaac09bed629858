import numpy as np
import pytest

from train import shapes


def test_deterministic_and_order_free():
    a = [shapes.render(7, i)[0] for i in (5, 1, 3)]
    b = [shapes.render(7, i)[0] for i in (1, 3, 5)]
    np.testing.assert_array_equal(a[0], b[2])
    np.testing.assert_array_equal(a[1], b[0])
    assert not np.array_equal(shapes.render(7, 1)[0], shapes.render(8, 1)[0])


def test_image_format():
    image, label = shapes.render(0, 0)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert label in (0, 1, 2)


def test_class_balance():
    labels = np.array([shapes.draw_spec(0, i).label for i in range(3000)])
    counts = np.bincount(labels, minlength=3)
    assert np.all(np.abs(counts - 1000) < 100)  # 3 sigma of a fair 3-way draw is about 77


@pytest.mark.parametrize("index", range(200))
def test_spec_bounds(index):
    spec = shapes.draw_spec(3, index)
    assert shapes.MIN_RADIUS <= spec.radius <= shapes.MAX_RADIUS
    dist = np.linalg.norm(np.subtract(spec.foreground, spec.background))
    assert dist >= shapes.MIN_COLOUR_DISTANCE
    cx, cy = spec.centre
    if spec.label == 0:
        assert spec.radius <= cx <= 64 - spec.radius and spec.radius <= cy <= 64 - spec.radius
    else:
        v = spec.vertices()
        assert len(v) == {1: 4, 2: 3}[spec.label]
        assert np.all(v >= 0) and np.all(v <= 64)
        # regular polygon: equal sides (square, equilateral triangle)
        sides = np.linalg.norm(v - np.roll(v, -1, axis=0), axis=1)
        np.testing.assert_allclose(sides, sides[0], rtol=1e-9)


def test_rendered_colours_and_antialiasing():
    spec = shapes.draw_spec(0, 11)
    image, _ = shapes.render(0, 11)
    alpha = shapes.coverage(spec)
    # pixels fully outside are the background colour, fully inside the foreground colour
    assert np.all(image[alpha == 0] == spec.background)
    assert np.all(image[alpha == 1] == spec.foreground)
    assert np.any((alpha > 0) & (alpha < 1))  # edges are blended
    # the shape's area matches its geometry within the supersampling error
    r = spec.radius
    area = {0: np.pi * r**2, 1: 2 * r**2, 2: 3 * np.sqrt(3) / 4 * r**2}[spec.label]
    assert alpha.sum() == pytest.approx(area, rel=0.03)
