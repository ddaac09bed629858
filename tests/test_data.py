import logging

import numpy as np
import pytest

pytest.importorskip("torch")
from PIL import Image  # noqa: E402

from train.data import DataError, open_dataset, prepare_image  # noqa: E402


def _write_image(path, colour, size=(80, 60), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)


@pytest.fixture
def class_folder(tmp_path):
    root = tmp_path / "data"
    _write_image(root / "cats" / "a.jpg", (250, 0, 0))
    _write_image(root / "cats" / "deep" / "b.png", (240, 10, 0), size=(64, 100))
    _write_image(root / "dogs" / "c.webp", (0, 0, 250))
    _write_image(root / "dogs" / "d.bmp", (0, 10, 240))
    (root / "dogs" / "broken.jpg").write_bytes(b"not a jpeg at all")
    (root / "dogs" / "notes.txt").write_text("ignored")
    return root


def test_folder_with_classes_skips_corrupt_files(class_folder, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        ds = open_dataset(str(class_folder), cache_dir=tmp_path / "cache")
    assert len(ds) == 4
    assert ds.classes == ["cats", "dogs"]
    assert "skipped 1 unreadable" in caplog.text and "broken.jpg" in caplog.text
    labels = [ds[i][1] for i in range(4)]
    assert labels == [0, 0, 1, 1]
    image = ds[0][0]
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert image[32, 32, 0] > 200  # the red image, decoded


def test_flat_folder_is_unlabelled(tmp_path):
    root = tmp_path / "flat"
    for i in range(3):
        _write_image(root / f"{i}.png", (i * 50, 0, 0))
    ds = open_dataset(str(root), cache_dir=tmp_path / "cache")
    assert len(ds) == 3 and ds.classes == [] and ds[0][1] == -1


def test_grey_images_for_nc1(class_folder, tmp_path):
    ds = open_dataset(str(class_folder), nc=1, cache_dir=tmp_path / "cache")
    assert ds[0][0].shape == (64, 64, 1)


def test_resize_shorter_side_then_centre_crop():
    left_right = Image.new("RGB", (200, 100), (0, 0, 0))
    left_right.paste((255, 255, 255), (0, 0, 50, 100))  # white left quarter is cropped away
    import io
    buf = io.BytesIO()
    left_right.save(buf, format="PNG")
    out = prepare_image(buf.getvalue(), nc=3)
    assert out.shape == (64, 64, 3)
    assert out.max() < 40  # only the black centre survives


def test_cache_is_reused_then_rebuilt_when_source_changes(class_folder, tmp_path, caplog):
    cache = tmp_path / "cache"
    open_dataset(str(class_folder), cache_dir=cache)
    [npy] = cache.glob("*.npy")
    mtime = npy.stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        ds = open_dataset(str(class_folder), cache_dir=cache)
    assert "reading cached images" in caplog.text
    assert npy.stat().st_mtime_ns == mtime and len(ds) == 4
    _write_image(class_folder / "dogs" / "e.png", (0, 200, 0))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        ds = open_dataset(str(class_folder), cache_dir=cache)
    assert "rebuilding the cache" in caplog.text
    assert len(ds) == 5
    assert len(list(cache.glob("*.npy"))) == 1  # replaced, not accumulated
    assert not list(cache.glob(".*tmp"))


def test_lmdb_source(tmp_path):
    lmdb = pytest.importorskip("lmdb")
    import io
    db = tmp_path / "bedroom_train_lmdb"
    env = lmdb.open(str(db), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i in range(5):
            buf = io.BytesIO()
            Image.new("RGB", (96, 72), (i * 40, 100, 0)).save(buf, format="WEBP")
            txn.put(f"{i:040x}".encode(), buf.getvalue())
        txn.put(b"f" * 40, b"corrupt")
    env.close()
    ds = open_dataset(str(db), cache_dir=tmp_path / "cache")
    assert len(ds) == 5
    assert ds[0][1] == -1 and ds[4][0].shape == (64, 64, 3)
    assert abs(int(ds[4][0][32, 32, 0]) - 160) <= 3


@pytest.mark.parametrize("spec, message", [
    ("shapes:abc", "shapes:N"),
    ("shapes:0", "at least 1"),
    ("/does/not/exist", "does not exist"),
])
def test_bad_specs(spec, message, tmp_path):
    with pytest.raises(DataError, match=message):
        open_dataset(spec, cache_dir=tmp_path)


def test_empty_and_unreadable_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        open_dataset(str(tmp_path / "empty"), cache_dir=tmp_path / "c")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"junk")
    with pytest.raises(DataError, match="none of the 1 images"):
        open_dataset(str(tmp_path / "bad"), cache_dir=tmp_path / "c")
    assert not [p for p in (tmp_path / "c").iterdir() if p.suffix in (".npy", ".json")]


def test_shapes_dataset_items():
    ds = open_dataset("shapes:10")
    assert len(ds) == 10
    image, label = ds[3]
    assert image.shape == (64, 64, 3) and label in (0, 1, 2)
    assert ds.fingerprint == "shapes:0:10"


def test_transparent_pixels_become_white():
    import io

    from PIL import Image

    from train.data import prepare_image

    rgba = np.zeros((64, 64, 4), np.uint8)  # fully transparent black ...
    rgba[16:48, 16:48] = (200, 10, 10, 255)  # ... around an opaque red square
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, format="PNG")
    out = prepare_image(buf.getvalue(), 3)
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[32, 32]) == (200, 10, 10)


def test_shapes_are_rendered_once_into_the_cache(tmp_path, monkeypatch):
    from train import shapes

    cache = tmp_path / "cache"
    ds = open_dataset("shapes:40", cache_dir=cache, shapes_seed=3)
    assert len(ds) == 40 and ds.fingerprint == "shapes:3:40"
    for i in (0, 17, 39):  # the cache holds exactly what the renderer draws
        image, label = shapes.render(3, i)
        got, got_label = ds[i]
        assert np.array_equal(got, image) and got_label == label
    assert len(list(cache.glob("*.npy"))) == 1
    grey = open_dataset("shapes:40", nc=1, cache_dir=cache, shapes_seed=3)  # its own cache
    assert grey[17][0].shape == (64, 64, 1) and len(list(cache.glob("*.npy"))) == 2

    def no_rendering(seed, index):
        raise AssertionError("rendered again")

    monkeypatch.setattr(shapes, "render", no_rendering)
    again = open_dataset("shapes:40", cache_dir=cache, shapes_seed=3)
    assert np.array_equal(again.images, ds.images)


def test_a_new_renderer_version_rebuilds_the_shapes_cache(tmp_path, monkeypatch):
    from train import shapes

    cache = tmp_path / "cache"
    open_dataset("shapes:16", cache_dir=cache)
    calls = []
    render = shapes.render
    monkeypatch.setattr(shapes, "render", lambda seed, i: calls.append(i) or render(seed, i))
    monkeypatch.setattr(shapes, "RENDER_VERSION", shapes.RENDER_VERSION + 1)
    ds = open_dataset("shapes:16", cache_dir=cache)
    assert len(calls) == 16 and ds.fingerprint == "shapes:0:16"  # the run's identity is unchanged
