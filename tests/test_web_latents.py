"""The page's latents (export/web/dcgan.js) against runtime/latents.py, run in Node: every float32
equal, for seeds and indices far above 2**64, both distributions, and streams long enough to reach
the ziggurat's rare branches (its tail and its rejection step)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from runtime.latents import MAX_INDEX, MAX_SEED, latents, slerp

MODULE = Path(__file__).parents[1] / "export" / "web" / "dcgan.js"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="needs Node.js (node) to run the page's module")

# reads [[what, args...], ...] as JSON from argv, prints one hex string of float32 bytes each
SCRIPT = """
import * as m from %s;
const hex = (z) => Buffer.from(Float32Array.from(z).buffer).toString("hex");
const out = JSON.parse(process.argv[1]).map(([what, ...a]) => {
  if (what === "latents") return hex(m.latents(BigInt(a[0]), BigInt(a[1]), a[2], a[3], a[4]));
  const z = a.filter(Array.isArray).map((p) => m.latent(BigInt(p[0]), BigInt(p[1]), p[2]));
  return hex(what === "slerp" ? m.slerp(z[0], z[1], a[2]) : m.arithmetic(z[0], z[1], z[2]));
});
console.log(JSON.stringify(out));
"""


def run_node(calls: list) -> list[np.ndarray]:
    code = SCRIPT % json.dumps(MODULE.as_uri())
    result = subprocess.run([NODE, "--input-type=module", "-e", code, json.dumps(calls)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [np.frombuffer(bytes.fromhex(h), np.float32) for h in json.loads(result.stdout)]


def pairs(n: int, seed: int = 0) -> list[tuple[int, int]]:
    """(seed, index) pairs from small to 2**128 - 1, most of them above 2**64."""
    rng = np.random.default_rng(seed)
    big = lambda: min(int(rng.integers(1, 2**63)) << int(rng.integers(0, 66)), MAX_SEED)  # noqa: E731
    out = [(0, 0), (1, 0), (0, 1), (2**64, 2**64), (2**64 - 1, 2**64 - 1), (MAX_SEED, MAX_INDEX)]
    return out + [(big(), big()) for _ in range(n - len(out))]


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_latents_equal_numpys_bit_for_bit(distribution):
    cases = pairs(400, seed=1 if distribution == "normal" else 2)
    got = run_node([["latents", str(s), str(i), 1, 100, distribution] for s, i in cases])
    for (s, i), z in zip(cases, got):
        want = latents(s, i, 1, 100, distribution)[0]
        assert z.tobytes() == want.tobytes(), f"seed {s}, index {i}: {np.flatnonzero(z != want)[:5]}"


def test_long_streams_reach_the_ziggurats_rare_branches_and_still_agree():
    # 3 x 40,000 draws: about 30 reach the tail beyond r, about 800 the rejection step
    cases = [(0, 0), (2**100 + 7, 2**90 + 3), (MAX_SEED, 12345)]
    got = run_node([["latents", str(s), str(i), 2, 20000, "normal"] for s, i in cases])
    for (s, i), z in zip(cases, got):
        want = latents(s, i, 2, 20000, "normal").ravel()
        assert z.tobytes() == want.tobytes(), f"seed {s}, index {i}: {np.flatnonzero(z != want)[:5]}"


def test_walk_and_arithmetic_follow_the_runtime():
    (s, a), (_, b), (_, c) = (7, 3), (7, 11), (7, 2**70)
    ts = [0.0, 0.25, 0.5, 1.0]
    got = run_node([["slerp", [s, a, 100], [s, b, 100], t] for t in ts]
                   + [["arithmetic", [s, a, 100], [s, b, 100], [s, c, 100]]])
    za, zb, zc = (latents(s, i, 1, 100)[0] for i in (a, b, c))
    for t, z in zip(ts, got):
        # float64 sums in another order than numpy's: equal to within float32 rounding
        np.testing.assert_allclose(z, slerp(za, zb, t), rtol=1e-6, atol=1e-6)
    assert got[-1].tobytes() == (za - zb + zc).tobytes()
