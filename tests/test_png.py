"""runtime/png.py: what it writes is a PNG every reader decodes to exactly the input pixels."""

import io

import numpy as np
import pytest
from PIL import Image

from runtime.png import PNG_SIGNATURE, encode_png


@pytest.mark.parametrize("shape", [(64, 64, 3), (64, 64, 1), (64, 64), (5, 7, 3), (1, 1, 3)])
def test_png_decodes_to_the_same_pixels(shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    data = encode_png(image)
    assert data.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(data)) as im:
        im.load()  # decoding checks every chunk's CRC and the zlib stream
        assert im.mode == ("RGB" if image.ndim == 3 and image.shape[2] == 3 else "L")
        expected = image if im.mode == "RGB" else image.reshape(shape[:2])
        assert np.array_equal(np.asarray(im), expected)


def test_png_is_deterministic_and_compresses_flat_images():
    flat = np.full((64, 64, 3), 200, np.uint8)
    assert encode_png(flat) == encode_png(flat.copy())
    assert len(encode_png(flat)) < 300  # 12 KiB of one colour


def test_png_refuses_what_it_cannot_write():
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="channels"):
        encode_png(np.zeros((4, 4, 4), np.uint8))
