"""The browser page in a real headless Chromium (pytest-playwright driving the system's browser):
it shows the runtime's images, its walk and arithmetic draw, bad input is a message on the page,
and a plain static server runs it on one thread. Skipped where no Chromium is installed
(`make browser` installs one)."""

from __future__ import annotations

import functools
import http.server
import io
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.web_speed import CHROMIUM_FLAGS, find_chromium
from runtime import Generator
from runtime.latents import slerp

pytest.importorskip("pytest_playwright", reason="needs pytest-playwright (the dev extra)")
uvicorn = pytest.importorskip("uvicorn", reason="needs the serve extra")

CHROMIUM = find_chromium()
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium (chromium, chromium-headless-shell or $DCGAN_CHROMIUM) — "
                             "make browser installs one")]
SEED, INDEX = 2**70 + 5, 2**65 + 3  # both above 2**64


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    """The system's Chromium: Playwright's own browser download cannot work offline."""
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_FLAGS}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(web_artifact):
    """The page as dcgan-serve serves it (serve/web.py, with COOP/COEP), on a real socket."""
    from starlette.applications import Starlette

    from runtime.manifest import read_manifest
    from serve.web import web_routes

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=web_routes(read_manifest(web_artifact))),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def runtime_gen(web_artifact):
    with Generator.load(web_artifact, backend="ort-cpu", precision="fp32") as gen:
        yield gen


def open_page(page, url: str) -> list[str]:
    """Load the page and wait until it has drawn everything; returns the console's errors."""
    errors = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_selector("body[data-ready]", timeout=60_000)
    return errors


def act(page, trigger) -> None:
    """Do `trigger` (a click, a slider move) and wait until the page has finished the action."""
    before = int(page.evaluate("document.body.dataset.done"))
    trigger()
    page.wait_for_function("(n) => Number(document.body.dataset.done) > n", arg=before)


def canvas(page, selector: str) -> np.ndarray:
    """The RGB pixels on a canvas, (H, W, 3) uint8."""
    width, height, data = page.evaluate("""(sel) => {
        const c = document.querySelector(sel);
        return [c.width, c.height, Array.from(c.getContext("2d").getImageData(0, 0, c.width, c.height).data)];
    }""", selector)
    return np.array(data, np.uint8).reshape(height, width, 4)[..., :3]


def tiles(grid: np.ndarray, size: int = 64) -> np.ndarray:
    """(rows*size, cols*size, 3) -> (rows*cols, size, size, 3), row by row."""
    rows, cols = grid.shape[0] // size, grid.shape[1] // size
    return grid.reshape(rows, size, cols, size, 3).transpose(0, 2, 1, 3, 4).reshape(-1, size, size, 3)


def close_to(got: np.ndarray, want: np.ndarray, what: str) -> float:
    """Assert within 1 level everywhere; returns (and prints) the byte-identical share."""
    diff = np.abs(got.astype(int) - want.astype(int))
    assert got.shape == want.shape and diff.max() <= 1, f"{what}: max diff {diff.max()}"
    share = float((diff == 0).mean())
    print(f"{what}: max diff {diff.max()}, byte-identical {share:.4%}")
    return share


def test_page_shows_the_runtimes_image_for_large_seeds_and_indices(page, served, runtime_gen):
    errors = open_page(page, f"{served}?seed={SEED}&index={INDEX}")
    assert page.evaluate("crossOriginIsolated") is True
    assert "WebAssembly SIMD" in page.inner_text("#backend")
    assert "not cross-origin isolated" not in page.inner_text("#backend")
    assert "ms/image" in page.inner_text("#timing")
    assert float(page.evaluate("document.body.dataset.firstImageMs")) > 0
    want = runtime_gen.generate(1, seed=SEED, start=INDEX)[0]
    close_to(canvas(page, "#image"), want, "image (seed, index)")
    grid = tiles(canvas(page, "#grid"))
    close_to(grid, runtime_gen.generate(16, seed=SEED, start=INDEX), "grid of 16")
    assert errors == []


def test_grid_of_64_and_the_png_download(page, served, runtime_gen):
    open_page(page, f"{served}?seed=3&index=100")
    page.select_option("#count", "64")
    act(page, lambda: page.click("#grid-show"))
    close_to(tiles(canvas(page, "#grid")), runtime_gen.generate(64, seed=3, start=100), "grid of 64")
    with page.expect_download() as download:
        page.click("#download")
    assert download.value.suggested_filename == "dcgan-seed3-100.png"
    png = np.asarray(Image.open(io.BytesIO(Path(download.value.path()).read_bytes())).convert("RGB"))
    assert np.array_equal(png, canvas(page, "#image"))


def test_walk_slider_and_arithmetic_draw_the_runtimes_latents(page, served, runtime_gen):
    open_page(page, f"{served}?seed=7")
    page.fill("#walk-a", "4")
    page.fill("#walk-b", "9")
    z0, z1 = runtime_gen.latents(1, seed=7, start=4)[0], runtime_gen.latents(1, seed=7, start=9)[0]
    for k in (0, 50, 100):  # the slider's positions: t = k / 100
        act(page, lambda k=k: page.fill("#walk-t", str(k)))
        assert page.inner_text("#walk-t-value") == f"{k / 100:.2f}"
        want = runtime_gen.from_latents(slerp(z0, z1, k / 100)[None])[0]
        close_to(canvas(page, "#walk"), want, f"walk t={k / 100}")
    for name, value in zip("abc", (5, 2**70, 6)):
        page.fill(f"#arith-{name}", str(value))
    act(page, lambda: page.click("#arith-show"))
    za, zb, zc = (runtime_gen.latents(1, seed=7, start=i)[0] for i in (5, 2**70, 6))
    want = runtime_gen.from_latents(np.stack([za, zb, zc, za - zb + zc]))
    close_to(tiles(canvas(page, "#arith")), want, "arithmetic a, b, c, a - b + c")


@pytest.mark.parametrize("field, value, message", [
    ("#seed", "-1", 'seed must be a whole number ≥ 0, not "-1"'),
    ("#seed", "1.5", 'seed must be a whole number ≥ 0, not "1.5"'),
    ("#index", str(2**128), "is past the last one, 2**128 − 1"),
    ("#index", "abc", 'index must be a whole number ≥ 0, not "abc"'),
])
def test_bad_input_is_a_message_on_the_page_not_an_exception(page, served, field, value, message):
    errors = open_page(page, served)
    before = canvas(page, "#image")
    page.fill(field, value)
    act(page, lambda: page.click("#show"))
    assert message in page.inner_text("#error")
    assert np.array_equal(canvas(page, "#image"), before)  # the last good image stays
    assert errors == []
    page.fill(field, "2")
    act(page, lambda: page.click("#show"))
    assert page.inner_text("#error") == ""


def test_int8_model_is_selectable(page, served, web_artifact):
    open_page(page, f"{served}?precision=int8&seed=1&index=2")
    assert "int8" in page.inner_text("#status")
    with Generator.load(web_artifact, backend="ort-cpu", precision="int8") as gen:
        want = gen.generate(1, seed=1, start=2)[0].astype(int)
    diff = np.abs(canvas(page, "#image").astype(int) - want)
    print(f"int8: max diff {diff.max()}, byte-identical {(diff == 0).mean():.4%}")
    assert diff.max() <= 3  # int8 kernels differ between WASM and native; each is within 3 of fp32


def test_a_plain_static_server_runs_the_page_on_one_thread_and_says_so(page, web_artifact, runtime_gen):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(web_artifact / "web"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        errors = open_page(page, f"http://127.0.0.1:{server.server_port}/?seed=4&index=4")
        assert page.evaluate("crossOriginIsolated") is False
        assert "1 thread (this page is not cross-origin isolated" in page.inner_text("#backend")
        close_to(canvas(page, "#image"), runtime_gen.generate(1, seed=4, start=4)[0], "static server")
        assert errors == []
    finally:
        server.shutdown()
