"""The shapes quality checker, calibrated on rendered data; EMA; recipes; resume with EMA and R1."""

import json

import numpy as np
import pytest

from train import shapes
from train.quality import FLAT_MEAN, check_image, distinct_share, score_images


@pytest.fixture(scope="module")
def renders():
    return np.stack([shapes.render(11, i)[0] for i in range(600)])


@pytest.mark.slow
def test_real_renders_pass_with_their_class_and_size(renders):
    score = score_images(renders)
    assert score.valid >= 0.99 and score.distinct == 1.0 and score.balance > 0.97
    for i in range(0, 600, 7):
        verdict, spec = check_image(renders[i]), shapes.draw_spec(11, i)
        assert verdict.valid and verdict.label == spec.label
        assert abs(verdict.radius - spec.radius) < 0.5


def test_noise_flat_images_and_noisy_shapes_fail(renders):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (50, 64, 64, 3), dtype=np.uint8)
    flat = np.broadcast_to(rng.integers(0, 256, (50, 1, 1, 3), dtype=np.uint8), (50, 64, 64, 3))
    assert score_images(noise).valid == 0 and score_images(np.ascontiguousarray(flat)).valid == 0
    grainy = np.clip(renders[:50] + rng.normal(0, 6, renders[:50].shape), 0, 255).astype(np.uint8)
    assert score_images(grainy).valid == 0  # grain where the spec has one flat colour
    # the background deviation measures it: 0 on renders, the grain's size on grainy ones
    assert score_images(renders[:50]).background_deviation == 0.0
    assert FLAT_MEAN < score_images(grainy).background_deviation < 2.5 * FLAT_MEAN
    # ... while their outlines are still those of the spec's shapes
    assert score_images(grainy).shape_valid >= 0.9 and score_images(noise).shape_valid == 0


def test_blobs_and_two_shapes_fail(renders):
    blurred = renders[:40].astype(np.float32)
    for _ in range(6):  # a soft blob instead of a crisp outline
        blurred = (blurred + np.roll(blurred, 1, 1) + np.roll(blurred, -1, 1) +
                   np.roll(blurred, 1, 2) + np.roll(blurred, -1, 2)) / 5
    # a second region, in the foreground colour, in a corner the shape does not reach
    far = [i for i in range(200) if min(shapes.draw_spec(11, i).centre) - shapes.draw_spec(11, i).radius > 10]
    two = renders[far].copy()
    for image, i in zip(two, far):
        image[2:8, 2:8] = shapes.draw_spec(11, i).foreground
    assert score_images(blurred.astype(np.uint8)).valid < 0.2
    assert len(far) > 20 and score_images(two).valid == 0


def test_distinct_share_counts_near_copies():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (10, 64, 64, 3), dtype=np.uint8)
    copies = np.concatenate([images, np.clip(images.astype(int) + 1, 0, 255).astype(np.uint8)])
    assert distinct_share(images) == 1.0
    assert distinct_share(copies) == 0.5


torch = pytest.importorskip("torch")


def test_ema_update_moves_towards_the_model():
    from train.ema import ema_decay, update_ema

    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    with torch.no_grad():
        a.weight.fill_(0.0), b.weight.fill_(1.0)
    update_ema(a, b, 0.9)
    assert torch.allclose(a.weight, torch.full_like(a.weight, 0.1))
    assert ema_decay(0.999, 0) == pytest.approx(0.1) and ema_decay(0.999, 10**6) == 0.999


def test_ema_weights_are_kept_and_exported(tmp_path):
    from conftest import tiny_train

    from export.load import load_for_export
    from train.checkpoint import load_checkpoint

    result = tiny_train(tmp_path / "r", steps=4, ema=0.9)
    state = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")
    assert "generator_ema" in state
    key = "main.0.weight"
    assert not torch.equal(state["generator_ema"][key], state["generator"][key])
    assert torch.equal(state["generator_ema"][key], result.generator_ema.state_dict()[key])
    loaded = load_for_export(tmp_path / "r" / "checkpoints" / "last.pt")
    assert loaded.weights == "generator_ema"
    assert torch.equal(loaded.generator.state_dict()[key], state["generator_ema"][key])
    raw = load_for_export(tmp_path / "r" / "checkpoints" / "last.pt", ema=False)
    assert raw.weights == "generator" and torch.equal(raw.generator.state_dict()[key],
                                                      state["generator"][key])


def test_recipe_paper_is_the_paper_exactly():
    from train.recipe import RECIPES, recipe_settings

    name, settings = recipe_settings("paper", "shapes", {})
    assert name == "paper"
    assert settings["batch_size"] == 128 and settings["lr"] == 2e-4 and settings["beta1"] == 0.5
    assert not any(settings[k] for k in ("label_smoothing", "instance_noise", "r1_gamma", "ema"))
    assert recipe_settings("auto", "shapes:100", {})[0] == "shapes"
    assert recipe_settings("auto", "/data/celeba", {})[0] == "paper"
    assert recipe_settings("shapes", "shapes", {"ema": 0.0})[1]["ema"] == 0.0  # overrides win
    assert set(RECIPES["paper"]) == set(RECIPES["shapes"])


@pytest.mark.slow
def test_cli_recipe_paper_is_recorded(tmp_path, capsys, caplog):
    import logging

    from runtime.cli_support import run_app
    from train.cli import app

    out = tmp_path / "r"
    caplog.set_level(logging.INFO)
    assert run_app(app, ["--recipe", "paper", "--data", "shapes:256", "--ngf", "8", "--ndf", "8",
                         "--nz", "16", "--steps", "1", "--batch-size", "8", "--workers", "0",
                         "--out", str(out)], prog="dcgan-train") == 0
    train = json.loads((out / "config.json").read_text())["train"]
    assert train["recipe"] == "paper" and train["ema"] == 0 and train["instance_noise"] == 0
    assert "recipe paper" in caplog.text


@pytest.mark.slow
def test_resume_is_bit_exact_with_ema_r1_and_decaying_noise(tmp_path):
    from conftest import tiny_train

    knobs = dict(data="shapes:64", ema=0.99, r1_gamma=1.0, r1_every=2, instance_noise=0.1,
                 instance_noise_floor=0.02, instance_noise_steps=5, label_smoothing=0.1)
    full = tiny_train(tmp_path / "full", steps=7, **knobs)
    tiny_train(tmp_path / "split", steps=3, **knobs)
    resumed = tiny_train(tmp_path / "split", steps=7, resume=True, **knobs)
    for a, b in ((full.generator, resumed.generator), (full.discriminator, resumed.discriminator),
                 (full.generator_ema, resumed.generator_ema)):
        for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(x, y), k


@pytest.mark.slow
def test_quality_is_logged_and_best_checkpoint_kept(tmp_path):
    from conftest import tiny_train

    tiny_train(tmp_path / "r", steps=4, quality_every=2, quality_samples=32)
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    scored = [r for r in rows if "quality" in r]
    assert [r["step"] for r in scored] == [2, 4]
    assert set(scored[0]["quality"]) >= {"valid", "balance", "distinct", "failures"}
    assert (tmp_path / "r" / "checkpoints" / "best.pt").exists()
    assert (tmp_path / "r" / "samples" / "step_000002.png").exists()


def test_anneal_scale_falls_linearly_to_zero_from_its_share_of_the_run():
    from train.config import TrainConfig
    from train.recipe import RECIPES
    from train.step import anneal_scale

    cfg = TrainConfig(anneal_from=0.5)
    assert [anneal_scale(cfg, s, 8) for s in (0, 3, 4, 5, 6, 7, 8)] == [1, 1, 1, .75, .5, .25, 0]
    assert anneal_scale(TrainConfig(), 7, 8) == 1.0  # the default: never
    assert RECIPES["paper"]["anneal_from"] == 1.0


@pytest.mark.slow
def test_resume_after_an_interrupt_is_bit_exact_while_annealing(tmp_path, monkeypatch):
    """Learning rates and noise follow the run's step, so a run stopped mid-anneal by SIGINT and
    resumed ends with the weights, optimizer state and learning rates of one uninterrupted run."""
    import os
    import signal

    from conftest import tiny_train

    from runtime.errors import Interrupted
    from train import loop

    knobs = dict(data="shapes:64", ema=0.99, instance_noise=0.1, anneal_from=0.3, lr_d=1e-4)
    full = tiny_train(tmp_path / "full", steps=7, **knobs)
    plain_step = loop.gan_step

    def interrupted_at_step_4(*args, **kwargs):
        if args[7] == 4:  # the step argument: SIGINT arrives during the fifth update
            os.kill(os.getpid(), signal.SIGINT)
        return plain_step(*args, **kwargs)

    monkeypatch.setattr(loop, "gan_step", interrupted_at_step_4)
    with pytest.raises(Interrupted):
        tiny_train(tmp_path / "split", steps=7, **knobs)
    monkeypatch.setattr(loop, "gan_step", plain_step)
    resumed = tiny_train(tmp_path / "split", steps=7, resume=True, **knobs)
    for a, b in ((full.generator, resumed.generator), (full.discriminator, resumed.discriminator),
                 (full.generator_ema, resumed.generator_ema)):
        for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
            assert torch.equal(x, y), k
    states = [torch.load(d / "checkpoints" / "last.pt", weights_only=False)
              for d in (tmp_path / "full", tmp_path / "split")]
    lrs = [[s[o]["param_groups"][0]["lr"] for o in ("opt_g", "opt_d")] for s in states]
    assert lrs[0] == lrs[1] and 0 < lrs[0][0] < 2e-4 and 0 < lrs[0][1] < 1e-4
