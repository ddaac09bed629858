"""The continuous quality metrics: the shipped feature network's calibration, KID / FD /
precision-recall on known cases, the anchors, and where the metrics are reported (metrics.jsonl,
quality.png, best.pt, dcgan-analyze quality and quality-curve)."""

import json

import numpy as np
import pytest

from train import shapes
from train.fidelity import frechet_distance, kid, precision_recall

torch = pytest.importorskip("torch")

# What the shipped network must read in fresh renders (seed 1005: neither its training nor its
# held-out renders). Stated errors are mean absolute errors, with room over what it reads.
MIN_ACCURACY = 0.99
MAX_RADIUS_ERROR = 1.0  # px
MAX_CENTRE_ERROR = 1.5  # px, per coordinate
MAX_COLOUR_ERROR = 12.0  # RGB levels, per channel


@pytest.fixture(scope="module")
def fresh():
    specs = [shapes.draw_spec(1005, i) for i in range(300)]
    return np.stack([shapes.paint(s) for s in specs]), specs


def test_shipped_network_classifies_and_reads_fresh_renders(fresh):
    from train.featnet import embed

    images, specs = fresh
    read = embed(images)
    assert np.mean(read.labels == [s.label for s in specs]) >= MIN_ACCURACY
    assert np.abs(read.radius - [s.radius for s in specs]).mean() < MAX_RADIUS_ERROR
    assert np.abs(read.centre - [s.centre for s in specs]).mean() < MAX_CENTRE_ERROR
    for got, key in ((read.foreground, "foreground"), (read.background, "background")):
        assert np.abs(got - [getattr(s, key) for s in specs]).mean() < MAX_COLOUR_ERROR, key
    assert read.features.shape == (300, 208) and np.allclose(read.probs.sum(1), 1)


def test_shipped_anchors_belong_to_the_shipped_weights_and_are_ordered():
    from runtime.files import sha256_file
    from train.continuous import ANCHORS_PATH, load_anchors
    from train.featnet import WEIGHTS_PATH

    anchors = load_anchors()
    assert anchors["weights_sha256"] == sha256_file(WEIGHTS_PATH)
    assert WEIGHTS_PATH.stat().st_size < 1_000_000 and ANCHORS_PATH.exists()
    a = anchors["anchors"]
    assert set(a) == {"real", "grain", "frame", "blur", "circles"}
    floor = a["real"]["scores"]
    for name in ("grain", "frame", "blur", "circles"):  # every perturbation moves KID and FD up
        assert a[name]["scores"]["kid"] > floor["kid"] and a[name]["scores"]["fd"] > floor["fd"], name
    for name in ("grain", "blur", "circles"):  # these by more than KID's spread over subsets
        assert a[name]["scores"]["kid"] > floor["kid"] + 3 * floor["kid_std"], name
    for name in ("grain", "frame", "blur"):  # at the edge: about half pass, or fewer
        assert a[name]["valid"] <= 0.6, name
    assert a["real"]["valid"] >= 0.99
    assert a["circles"]["scores"]["class_shares"]["circle"] > 0.8


def _gaussians(n=400, d=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


def test_identical_sets_score_as_equal():
    x = _gaussians()
    k, k_std = kid(x, x, subset_size=100)
    disjoint = kid(x, x + 10, subset_size=100)[0]
    assert abs(k) < 0.01 * disjoint and k_std < 0.01 * disjoint
    assert frechet_distance(x, x) == pytest.approx(0, abs=1e-8)
    assert precision_recall(x, x) == (1.0, 1.0)


def test_disjoint_sets_score_as_far_apart():
    x = _gaussians()
    far = x + 10
    assert precision_recall(x, far) == (0.0, 0.0)
    assert frechet_distance(x, far) == pytest.approx(100 * x.shape[1], rel=0.01)  # |mu|^2 = 16 * 10^2


def _modes(seed: int, n: int = 400, d: int = 16) -> np.ndarray:
    """n points in four well-separated Gaussian clusters, the first quarter in the first."""
    x = _gaussians(n, d, seed)
    x[:, :4] += 8 * np.repeat(np.eye(4), n // 4, axis=0)
    return x


def test_a_subset_has_precision_but_not_recall_and_orders_between():
    x, other = _modes(seed=0), _modes(seed=1)  # same distribution, independent draws
    part = x[:100]  # one mode of four: a model that only draws circles
    p, r = precision_recall(x, part)
    assert p == 1.0 and r < 0.3
    kids = [kid(x, y, subset_size=100)[0] for y in (other, part, x + 10)]
    fds = [frechet_distance(x, y) for y in (other, part, x + 10)]
    assert kids == sorted(kids) and fds == sorted(fds)
    assert abs(kids[0]) < 0.1 * kids[1]  # two draws of one distribution: KID is unbiased


def test_continuous_score_of_renders_noise_and_circles(fresh):
    from train.anchors import circles
    from train.continuous import score_continuous

    images, specs = fresh
    real, round_ = score_continuous(images[:128]), score_continuous(circles(images[:128], specs[:128]))
    noise = score_continuous(np.random.default_rng(0).integers(0, 256, (128, 64, 64, 3), np.uint8))
    assert real.kid < round_.kid < noise.kid and real.fd < noise.fd
    assert real.precision > 0.5 and noise.precision == 0.0
    assert sum(real.class_shares.values()) == pytest.approx(1.0)
    assert round_.class_shares["circle"] > 0.8 > real.class_shares["circle"]
    assert real.small_radius == 0.0 and real.radius_tv < 0.3
    assert "KID" in real.summary() and "grain" in real.summary()  # printed beside its anchors


def test_perturbations_reach_the_checker_edge_they_claim():
    from train.anchors import blur, find_edge, frame, grain, valid_share

    specs = [shapes.draw_spec(1006, i) for i in range(24)]
    images = np.stack([shapes.paint(s) for s in specs])
    assert valid_share(images) == 1.0
    for perturb, strengths in ((grain, (1, 16)), (frame, (0.05, 1.0)), (blur, (0.3, 2.0))):
        edge, tried = find_edge(perturb, strengths, images, specs)
        assert edge == strengths[1] and tried[strengths[0]] > 0.5 >= tried[strengths[1]], perturb


@pytest.mark.slow
def test_quality_record_has_the_continuous_metrics_and_best_is_the_lowest_kid(tmp_path):
    from conftest import tiny_train

    from train.checkpoint import load_checkpoint

    run = tmp_path / "r"
    tiny_train(run, steps=6, quality_every=2, quality_samples=32)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    scored = [r["quality"] for r in rows if "quality" in r]
    assert len(scored) == 3
    for q in scored:
        assert set(q) >= {"valid", "balance", "distinct", "failures", "kid", "kid_std", "fd",
                          "precision", "recall", "class_shares", "small_radius", "radius_tv",
                          "low_contrast", "colour_tv"}
        assert set(q["class_shares"]) == set(shapes.CLASSES)
    best = load_checkpoint(run / "checkpoints" / "best.pt")["best_quality"]
    assert best["kid"] == min(q["kid"] for q in scored)
    assert (run / "quality.png").exists() and (run / "loss.png").exists()


@pytest.mark.slow
def test_analyze_quality_and_quality_curve_on_a_tiny_run(tmp_path):
    from conftest import tiny_train

    from analysis.cli import app
    from runtime.cli_support import run_app

    run = tmp_path / "r"
    tiny_train(run, steps=4, quality_every=2, quality_samples=16)
    out = tmp_path / "q"
    assert run_app(app, ["quality", str(run / "checkpoints" / "last.pt"), "--n", "32", "--out",
                         str(out)], prog="dcgan-analyze") == 0
    saved = json.loads((out / "quality.json").read_text())
    assert {"valid", "kid", "precision", "class_shares", "histograms"} <= set(saved)
    curve = tmp_path / "c"
    assert run_app(app, ["quality-curve", str(run), "--n", "32", "--out", str(curve)],
                   prog="dcgan-analyze") == 0
    rows = json.loads((curve / "curve.json").read_text())["rows"]
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps)) and steps[-1] == 4  # best.pt and last.pt of one step: once
    assert "kid" in rows[0] and (curve / "curve.png").exists()
    table = (curve / "curve.md").read_text()
    assert "| 4 |" in table and "| anchor | grain |" in table
    assert run_app(app, ["quality-curve", str(tmp_path / "none")], prog="dcgan-analyze") == 1
