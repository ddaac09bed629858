"""The browser page's speed: images/s of onnxruntime-web (WebAssembly SIMD) in headless Chromium,
beside native onnxruntime on the same machine, and how soon the first image is on screen.

    python -m benchmarks.web_speed ARTIFACT [--seconds 3] [--out bench] [--screenshot PNG]

Starts `dcgan-serve ARTIFACT` (the page at /, cross-origin isolated), opens it in the system's
Chromium through Playwright, and times the page's own `infer` (one `session.run`) for batch 1 and
16 on 1 and 2 threads, after a warm-up; native onnxruntime runs the same model file with the same
threads and batches in this process, the two in turn, best of three rounds each. The first image
is timed on reloads with the browser's cache warm (the model and onnxruntime-web already cached),
from the page's load event. The page's pixels are checked against `runtime.Generator` on the way
(64 images, seed 0).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from benchmarks import machine
from benchmarks.report import write_result
from runtime.cli_support import Debug, new_app, run_app
from runtime.errors import DcganError
from runtime.generator import Generator
from runtime.manifest import read_manifest
from runtime.optional import import_onnxruntime

app = new_app(__doc__)
ROOT = Path(__file__).parents[1]
# what lets Chromium run in a container without a display, a GPU or the network
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
THREADS, BATCHES, ROUNDS = (1, 2), (1, 16), 3
# times `reps` calls of the page's infer() on a batch of n, after 3 warm-up calls
TIME_IN_PAGE = """async ([n, seconds]) => {
  const m = await import("./dcgan.js"), info = await (await fetch("model.json")).json();
  const z = m.latents(0n, 0n, n, info.nz, info.latent);
  for (let i = 0; i < 3; i++) await m.infer(z, n);
  let reps = 0; const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000 || reps < 5) { await m.infer(z, n); reps++; }
  return [reps, (performance.now() - t0) / 1000];
}"""


def find_chromium() -> str | None:
    """The system's Chromium: $DCGAN_CHROMIUM, else chromium, chromium-headless-shell on PATH."""
    return os.environ.get("DCGAN_CHROMIUM") or next(
        filter(None, map(shutil.which, ("chromium", "chromium-headless-shell", "chromium-browser"))), None)


def _serve(artifact: Path) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "serve.cli", str(artifact), "--port", str(port),
                             "--backend", "ort-cpu"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "readyz", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise DcganError("dcgan-serve did not become ready in 120 s")


def _native(model: Path, nz: int, threads: int):
    """A function (batch, seconds) -> images/s of native onnxruntime on `threads` threads."""
    ort = import_onnxruntime()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])

    def rate(batch: int, seconds: float) -> float:
        z = np.random.default_rng(0).standard_normal((batch, nz), np.float32)
        feed = {session.get_inputs()[0].name: z}
        for _ in range(3):
            session.run(None, feed)
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or reps < 5:
            session.run(None, feed)
            reps += 1
        return reps * batch / (time.perf_counter() - t0)
    return rate


def _open(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready]", timeout=120_000)
    if page.inner_text("#error"):
        raise DcganError(f"the page shows an error: {page.inner_text('#error')}")


def _first_image_ms(page, url: str, loads: int = 5) -> dict:
    """Median ms from the load event (and from navigation start) to the first image drawn, over
    `loads` reloads with a warm cache."""
    _open(page, url)  # fills the cache
    since_load, since_start = [], []
    for _ in range(loads):
        _open(page, url)
        first = float(page.evaluate("document.body.dataset.firstImageMs"))
        load = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
        since_load.append(first - load)
        since_start.append(first)
    return {"since_load_event_ms": statistics.median(since_load),
            "since_navigation_ms": statistics.median(since_start), "loads": loads}


def _pixels(page, url: str, artifact: Path, precision: str) -> dict:
    """The page's grid of 64 (seed 0) against runtime.Generator's on ort-cpu."""
    _open(page, f"{url}?precision={precision}")
    page.select_option("#count", "64")
    done = int(page.evaluate("document.body.dataset.done"))
    page.click("#grid-show")
    page.wait_for_function("(n) => Number(document.body.dataset.done) > n", arg=done)
    w, h, data = page.evaluate("""() => { const c = document.querySelector('#grid');
        const pixels = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        return [c.width, c.height, Array.from(pixels)]; }""")
    grid = np.array(data, np.uint8).reshape(h, w, 4)[..., :3]
    tiles = grid.reshape(8, 64, 8, 64, 3).transpose(0, 2, 1, 3, 4).reshape(64, 64, 64, 3)
    with Generator.load(artifact, backend="ort-cpu", precision=precision) as gen:
        want = gen.generate(64, seed=0)
    diff = np.abs(tiles.astype(int) - want.astype(int))
    return {"precision": precision, "max_diff": int(diff.max()), "identical_share": float((diff == 0).mean())}


def measure(artifact: Path, seconds: float, screenshot: Path | None) -> dict:
    from playwright.sync_api import sync_playwright

    chromium = find_chromium()
    if chromium is None:
        raise DcganError("no Chromium found — make browser installs one (or set DCGAN_CHROMIUM)")
    manifest = read_manifest(artifact)
    web = manifest.web_dir
    if web is None:
        raise DcganError(f"{artifact} has no web page — re-export it with dcgan-export --format web")
    result = {"artifact": str(artifact), "seconds": seconds, "machine": machine.describe(),
              "load_average": os.getloadavg(), "ort_web": manifest.data["web"]["ort_web"], "rows": []}
    proc, url = _serve(artifact)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            result["chromium"] = browser.version
            page = browser.new_page(viewport={"width": 1100, "height": 820})
            result["first_image"] = _first_image_ms(page, url)
            if screenshot:
                page.screenshot(path=str(screenshot))
            result["pixels"] = [_pixels(page, url, artifact, precision)
                                for precision in manifest.data["web"]["models"]]
            for threads in THREADS:
                _open(page, f"{url}?threads={threads}")
                native = _native(artifact / "model.onnx", manifest.nz, threads)
                for batch in BATCHES:
                    # browser and native in turn, best of ROUNDS each: other load on the machine
                    # only ever slows a round down
                    wasm, ort = [], []
                    for _ in range(ROUNDS):
                        reps, elapsed = page.evaluate(TIME_IN_PAGE, [batch, seconds / ROUNDS])
                        wasm.append(reps * batch / elapsed)
                        ort.append(native(batch, seconds / ROUNDS))
                    result["rows"].append({"threads": threads, "batch": batch, "wasm_images_per_s": max(wasm),
                                           "native_images_per_s": max(ort), "fraction": max(wasm) / max(ort),
                                           "wasm_rounds": wasm, "native_rounds": ort})
            browser.close()
    finally:
        proc.terminate()
        proc.wait(30)
    return result


def markdown(result: dict, command: str) -> str:
    m = result["machine"]
    first = result["first_image"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores (load average {result['load_average'][0]:.2f} at the "
             f"start: shared with other work). Chromium {result['chromium']} headless, onnxruntime-web "
             f"{result['ort_web']} (WebAssembly SIMD); native onnxruntime "
             f"{m['versions'].get('onnxruntime', '?')}, CPU provider, same threads. Model: "
             f"{result['artifact']}/model.onnx (fp32), {result['seconds']:.0f} s per row and side, best "
             f"of {ROUNDS} alternating rounds.",
             "", f"Command: `{command}`", "",
             "| threads | batch | browser images/s | native images/s | browser / native |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['threads']} | {r['batch']} | {r['wasm_images_per_s']:.0f} | "
              f"{r['native_images_per_s']:.0f} | {r['fraction']:.2f}x |" for r in result["rows"]]
    lines += ["", f"First image on screen, model and onnxruntime-web in the browser's cache (median of "
                  f"{first['loads']} reloads): {first['since_load_event_ms']:.0f} ms after the load event, "
                  f"{first['since_navigation_ms']:.0f} ms after navigation start.", ""]
    lines += [f"Pixels, page vs runtime.Generator (ort-cpu), 64 images of seed 0, {p['precision']}: max "
              f"difference {p['max_diff']} level(s), {p['identical_share']:.4%} of bytes identical."
              for p in result["pixels"]]
    return "\n".join(lines) + "\n"


@app.command()
def main_command(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory with a web page "
                                             "(dcgan-export --format web or all).")],
    seconds: Annotated[float, typer.Option(min=0.5, help="Timed seconds per row.")] = 3.0,
    out: Annotated[Path, typer.Option(help="Where web.json and web.md go.")] = Path("bench"),
    screenshot: Annotated[Path | None, typer.Option(help="Also save a screenshot of the page here.",
                                                    show_default=False)] = None,
    debug: Debug = False,
) -> None:
    """Measure the browser page against native onnxruntime (see the module docstring)."""
    result = measure(artifact, seconds, screenshot)
    command = "python -m benchmarks.web_speed " + " ".join(sys.argv[1:])
    result["command"] = command
    write_result(out, "web", result, markdown(result, command))
    typer.echo(markdown(result, command))


def main() -> None:
    raise SystemExit(run_app(app, prog="web_speed"))


if __name__ == "__main__":
    main()
