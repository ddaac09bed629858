import io
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from conftest import HAS_TORCH
from PIL import Image

from runtime import Generator
from runtime.images import make_grid
from runtime.service_example import serve

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason="the fixtures export with torch")


def test_service_returns_the_generators_images(tiny_artifact):
    with Generator.load(tiny_artifact, backend="ort-cpu") as gen:
        server = serve(gen, port=0)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        base = f"http://127.0.0.1:{server.server_port}"
        try:
            with urllib.request.urlopen(f"{base}/image?seed=7&n=1", timeout=10) as r:
                assert r.headers["Content-Type"] == "image/png"
                one = np.asarray(Image.open(io.BytesIO(r.read())))
            np.testing.assert_array_equal(one, gen.generate(1, seed=7)[0])
            with urllib.request.urlopen(f"{base}/image?seed=7&n=4", timeout=10) as r:
                grid = np.asarray(Image.open(io.BytesIO(r.read())))
            np.testing.assert_array_equal(grid, make_grid(gen.generate(4, seed=7)))
            for bad in ("/image?n=0", "/image?seed=x", "/nothing"):
                with pytest.raises(urllib.error.HTTPError) as e:
                    urllib.request.urlopen(base + bad, timeout=10)
                assert e.value.code in (400, 404)
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)
