import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from analysis.cli import app  # noqa: E402
from analysis.visualize import GuidedLeakyReLU  # noqa: E402
from runtime import Generator  # noqa: E402
from runtime.cli_support import run_app  # noqa: E402


def _analyze(argv, capsys):
    code = run_app(app, [str(a) for a in argv], prog="dcgan-analyze")
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _json(path):
    return json.loads(path.read_text())


def _png_shape(path):
    from PIL import Image

    return np.asarray(Image.open(path)).shape


@pytest.mark.slow
def test_walk_from_artifact_and_from_checkpoint(tiny_artifact, tiny_checkpoint, tmp_path, capsys):
    code, _, err = _analyze(["walk", tiny_artifact, "--rows", 3, "--steps", 5, "--out", tmp_path / "w"],
                            capsys)
    assert code == 0, err
    result = _json(tmp_path / "w" / "walk.json")
    assert result["rows"] == 3 and result["method"] == "slerp" and len(result["per_row"]) == 3
    assert all(r["mean_step_change"] >= 0 for r in result["per_row"])
    assert _png_shape(tmp_path / "w" / "walk.png") == (3 * 66 + 2, 5 * 66 + 2, 3)
    code, _, err = _analyze(["walk", tiny_checkpoint, "--rows", 1, "--steps", 2, "--method", "linear",
                             "--out", tmp_path / "w2"], capsys)
    assert code == 0, err


def test_arithmetic_equals_the_formula(tiny_artifact, tmp_path, capsys):
    rng = np.random.default_rng(0)
    groups = {k: rng.standard_normal((n, 16)).astype(np.float32) for k, n in (("a", 3), ("b", 2), ("c", 1))}
    for k, z in groups.items():
        np.save(tmp_path / f"{k}.npy", z)
    code, _, err = _analyze(["arithmetic", tiny_artifact, "--a", tmp_path / "a.npy", "--b",
                             tmp_path / "b.npy", "--c", tmp_path / "c.npy", "--out", tmp_path / "o"], capsys)
    assert code == 0, err
    expected = groups["a"].mean(0) - groups["b"].mean(0) + groups["c"].mean(0)
    np.testing.assert_allclose(np.load(tmp_path / "o" / "result_latent.npy")[0], expected, rtol=1e-6)
    result = _json(tmp_path / "o" / "arithmetic.json")
    assert result["sizes"] == [3, 2, 1] and result["result_norm"] == pytest.approx(
        float(np.linalg.norm(expected)), rel=1e-5)
    assert _png_shape(tmp_path / "o" / "arithmetic.png")[0] == 5 * 66 + 2


def test_arithmetic_from_generate_run_indices(tiny_artifact, tmp_path, capsys):
    from runtime.cli import app as generate_app

    assert run_app(generate_app, [str(tiny_artifact), "-n", "6", "--seed", "4", "--out",
                                  str(tmp_path / "run")], prog="dcgan-generate") == 0
    code, _, err = _analyze(["arithmetic", tiny_artifact, "--a", "0,1", "--b", "2", "--c", "3",
                             "--run", tmp_path / "run", "--out", tmp_path / "o"], capsys)
    assert code == 0, err
    with Generator.load(tiny_artifact, backend="ort-cpu") as gen:
        z = gen.latents(4, seed=4)
    np.testing.assert_allclose(np.load(tmp_path / "o" / "result_latent.npy")[0],
                               z[:2].mean(0) - z[2] + z[3], rtol=1e-6)
    code, _, err = _analyze(["arithmetic", tiny_artifact, "--a", "0,99", "--b", "2", "--c", "3",
                             "--run", tmp_path / "run", "--out", tmp_path / "o2"], capsys)
    assert code == 1 and "index 99 is not in the run" in err


@pytest.mark.slow
def test_features_accuracies(tiny_checkpoint, tmp_path, capsys):
    code, out, err = _analyze(["features", tiny_checkpoint, "--data", "shapes:300", "--labels-per-class",
                               30, "--test-per-class", 20, "--out", tmp_path / "f"], capsys)
    assert code == 0, err
    result = _json(tmp_path / "f" / "features.json")
    for key in ("accuracy_trained_d", "accuracy_random_d"):
        assert 0 <= result[key] <= 1
    assert result["classes"] == ["circle", "square", "triangle"] and result["chance"] == pytest.approx(1 / 3)
    assert result["feature_dim"] == 240 * 8
    assert "accuracy: trained D" in out and (tmp_path / "f" / "features.png").exists()


def test_features_needs_labels_and_a_discriminator(tiny_checkpoint, tiny_artifact, tmp_path, capsys):
    from PIL import Image

    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(4):
        Image.new("RGB", (64, 64), (i * 60, 0, 0)).save(flat / f"{i}.png")
    code, _, err = _analyze(["features", tiny_checkpoint, "--data", flat, "--out", tmp_path / "f"], capsys)
    assert code == 1 and "has no class labels" in err
    g_only = tmp_path / "netG.pth"
    from export.load import load_for_export

    torch.save(load_for_export(tiny_checkpoint).generator.state_dict(), g_only)
    code, _, err = _analyze(["features", g_only, "--out", tmp_path / "f"], capsys)
    assert code == 1 and "holds no discriminator" in err


@pytest.mark.slow
def test_neighbors_distances_and_verdict(tiny_checkpoint, tmp_path, capsys):
    code, out, err = _analyze(["neighbors", tiny_checkpoint, "--generated", 12, "--train", 64,
                               "--heldout", 12, "--out", tmp_path / "n"], capsys)
    assert code == 0, err
    result = _json(tmp_path / "n" / "neighbors.json")
    for space in ("pixel", "d_feature"):
        for which in ("generated_to_train", "heldout_to_train"):
            stats = result[space][which]
            assert 0 <= stats["min"] <= stats["median"] and stats["mean"] >= 0
    assert result["train"] == 64 and result["heldout"] == 12
    assert result["verdict"] in out
    assert _png_shape(tmp_path / "n" / "neighbors.png") == (3 * 66 + 2, 12 * 66 + 2, 3)


def test_neighbors_finds_exact_copies():
    from analysis.neighbors import nearest

    refs = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    idx, dist = nearest(refs[[7, 3]], refs)
    assert idx.tolist() == [7, 3] and np.allclose(dist, 0, atol=1e-3)


@pytest.mark.slow
def test_visualize_and_guided_gradients_are_non_negative(tiny_checkpoint, tmp_path, capsys):
    x = torch.randn(1000, requires_grad=True)
    GuidedLeakyReLU.apply(x, 0.2).backward(torch.randn(1000))
    assert torch.all(x.grad >= 0) and torch.all(x.grad[x <= 0] == 0)
    code, _, err = _analyze(["visualize", tiny_checkpoint, "--images", 16, "--top", 3, "--layer", 2,
                             "--out", tmp_path / "v"], capsys)
    assert code == 0, err
    result = _json(tmp_path / "v" / "visualize.json")
    assert result["layer"] == 2 and len(result["trained_d"]) == 3 and len(result["random_d"]) == 3
    assert _png_shape(tmp_path / "v" / "visualize.png") == (4 * 66 + 2, 3 * 66 + 2, 3)
