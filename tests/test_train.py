import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")

from conftest import tiny_train  # noqa: E402

import train.data  # noqa: E402
from train.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from train.errors import TrainingError  # noqa: E402


def _assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_run_directory_contents(tiny_run):
    assert (tiny_run / "config.json").exists()
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["model"]["ngf"] == 8 and config["train"]["lr"] == 2e-4
    rows = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 7))
    for r in rows:
        assert set(r) >= {"step", "epoch", "loss_d", "loss_g", "d_x", "d_g_z", "images_per_s"}
        assert all(map(lambda v: v == v and abs(v) < float("inf"), (r["loss_d"], r["loss_g"])))
        assert 0 <= r["d_x"] <= 1 and 0 <= r["d_g_z"] <= 1 and r["images_per_s"] > 0
    assert (tiny_run / "samples" / "step_000006.png").exists()
    assert (tiny_run / "loss.png").stat().st_size > 1000
    state = load_checkpoint(tiny_run / "checkpoints" / "last.pt")
    assert state["step"] == 6 and state["model_config"]["nz"] == 16
    assert state["data_fingerprint"] == "shapes:0:256"


def test_epoch_samples_and_checkpoints(tmp_path):
    tiny_train(tmp_path / "r", steps=8, data="shapes:64")  # 4 steps per epoch
    assert sorted(p.name for p in (tmp_path / "r" / "samples").iterdir()) == [
        "epoch_001.png", "epoch_002.png", "last.png"]
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == [
        "epoch_001.pt", "epoch_002.pt", "last.pt"]


def test_tiny_data_writes_epoch_ends_at_most_once_per_save_every(tmp_path):
    # 4 steps per epoch, --save-every 10: only the epoch ends that pass step 10 and 20 write
    tiny_train(tmp_path / "r", steps=24, data="shapes:64", save_every=10)
    kept = sorted(p.name for p in (tmp_path / "r" / "checkpoints").glob("epoch_*.pt"))
    assert kept == ["epoch_003.pt", "epoch_005.pt"]
    grids = sorted(p.name for p in (tmp_path / "r" / "samples").glob("epoch_*.png"))
    assert grids == ["epoch_003.png", "epoch_005.png"]


@pytest.mark.slow
def test_resume_is_bit_exact(tmp_path):
    # 4 steps per epoch: stop mid-epoch at 3, resume across the epoch boundary to 7
    full = tiny_train(tmp_path / "full", steps=7, data="shapes:64")
    tiny_train(tmp_path / "split", steps=3, data="shapes:64")
    resumed = tiny_train(tmp_path / "split", steps=7, data="shapes:64", resume=True)
    assert resumed.step == 7
    _assert_same_weights(full.generator.state_dict(), resumed.generator.state_dict())
    _assert_same_weights(full.discriminator.state_dict(), resumed.discriminator.state_dict())
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    _assert_same_weights(a["generator"], b["generator"])
    assert torch.equal(a["opt_g"]["state"][0]["exp_avg"], b["opt_g"]["state"][0]["exp_avg"])


def test_a_setting_newer_than_the_checkpoint_resumes_as_it_was_before_it_existed(tiny_run, tmp_path):
    """A checkpoint written before `--augment` existed has no "augment": its run resumes without
    augmentation whatever the recipe now says, and with every setting it does hold."""
    import shutil

    from train.config import ModelConfig, TrainConfig
    from train.rundir import stored_run

    run = tmp_path / "old"
    shutil.copytree(tiny_run, run)
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    del state["train_config"]["augment"]
    torch.save(state, run / "checkpoints" / "last.pt")
    cfg = TrainConfig(augment="translation", lr=1.0)  # what a recipe would fill in today
    stored_run(run, cfg, ModelConfig())
    assert cfg.augment == "" and cfg.lr == state["train_config"]["lr"]


@pytest.mark.slow
def test_bf16_on_cpu_trains_in_bf16_and_resumes_bit_exact(tmp_path, monkeypatch):
    # the capability check patched on: autocast itself runs on any CPU, natively or emulated
    monkeypatch.setattr("train.device.native_bf16", lambda device: True)
    fp32 = tiny_train(tmp_path / "fp32", steps=5, data="shapes:64", device="cpu")
    full = tiny_train(tmp_path / "full", steps=5, data="shapes:64", device="cpu", bf16=True)
    tiny_train(tmp_path / "split", steps=2, data="shapes:64", device="cpu", bf16=True)
    resumed = tiny_train(tmp_path / "split", steps=5, data="shapes:64", device="cpu", bf16=True,
                         resume=True)
    _assert_same_weights(full.generator.state_dict(), resumed.generator.state_dict())
    _assert_same_weights(full.discriminator.state_dict(), resumed.discriminator.state_dict())
    assert all(p.dtype == torch.float32 for p in full.generator.parameters())  # fp32 master weights
    assert not torch.equal(fp32.generator.main[0].weight, full.generator.main[0].weight)


def test_existing_run_is_refused_without_resume_or_overwrite(tmp_path):
    tiny_train(tmp_path / "r", steps=1)
    with pytest.raises(TrainingError, match="already holds a run — pass --resume"):
        tiny_train(tmp_path / "r", steps=1)
    with pytest.raises(TrainingError, match="different config"):
        tiny_train(tmp_path / "r", steps=1, lr=1e-3)
    result = tiny_train(tmp_path / "r", steps=2, lr=1e-3, overwrite=True)
    assert result.step == 2
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train"]["lr"] == 1e-3


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(TrainingError, match="no checkpoint"):
        tiny_train(tmp_path / "none", steps=1, resume=True)


def test_nan_guard_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    import train.step

    real_bce = torch.nn.functional.binary_cross_entropy_with_logits
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real_bce(*args, **kwargs)
        return loss * float("nan") if calls["n"] > 9 else loss  # 3 BCE calls per step: step 4

    monkeypatch.setattr(train.step.F, "binary_cross_entropy_with_logits", poisoned)
    with pytest.raises(TrainingError, match="non-finite at step 4"):
        tiny_train(tmp_path / "r", steps=10, save_every=2)
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["step"] == 2


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(bad)
    torch.save({"weights": torch.zeros(1)}, bad)
    with pytest.raises(CheckpointError, match="not a dcgan training checkpoint"):
        load_checkpoint(bad)


@pytest.mark.parametrize("signum, code, workers", [
    (signal.SIGINT, 130, 0), (signal.SIGTERM, 143, 0),
    (signal.SIGINT, 130, 1),  # Ctrl-C reaches the data-loader worker too
])
@pytest.mark.slow
def test_signal_saves_checkpoint_and_exits(tmp_path, signum, code, workers):
    out = tmp_path / "r"
    proc = subprocess.Popen(
        [sys.executable, "-m", "train.cli", "--data", "shapes:256", "--ngf", "8", "--ndf", "8",
         "--nz", "16", "--batch-size", "8", "--steps", "100000", "--workers", str(workers),
         "--log-every", "1", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        time.sleep(0.1)
    os.killpg(proc.pid, signum)  # the whole process group, as a terminal's Ctrl-C does
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert f"stopped by {signal.Signals(signum).name}" in err
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["step"] >= 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _counting(shapes_source, log_path: str):
    """shapes_source whose renders are logged, one line per image drawn into the cache."""
    def counted(seed: int, length: int):
        source = shapes_source(seed, length)

        def read(i: int):
            with open(log_path, "a") as f:
                f.write(f"{i}\n")
            return source.read(i)
        return dataclasses.replace(source, read=read)
    return counted


def _ddp_worker(rank: int, world: int, port: int, out: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    train.data.shapes_source = _counting(train.data.shapes_source, f"{out}.rank{rank}.renders")
    result = tiny_train(out, steps=3, data="shapes:128", device="cpu", cache_dir=f"{out}.cache")
    torch.save({"g": result.generator.state_dict(), "d": result.discriminator.state_dict()},
               f"{out}.rank{rank}.pt")


@pytest.mark.slow
def test_two_process_gloo_ranks_stay_identical(tmp_path):
    out = str(tmp_path / "ddp")
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), out), nprocs=2, join=True)
    r0 = torch.load(f"{out}.rank0.pt", weights_only=True)
    r1 = torch.load(f"{out}.rank1.pt", weights_only=True)
    _assert_same_weights(r0["g"], r1["g"])
    _assert_same_weights(r0["d"], r1["d"])
    state = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")
    assert state["step"] == 3
    _assert_same_weights(state["generator"], r0["g"])
    # the weights moved: training really happened on both ranks
    rows = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 3 and json.loads(rows[-1])["images_per_s"] > 0
    # the data cache was rendered once, by rank 0; rank 1 read it
    assert len((tmp_path / "ddp.rank0.renders").read_text().split()) == 128
    assert not (tmp_path / "ddp.rank1.renders").exists()


def test_instance_noise_and_label_smoothing(tmp_path):
    from train.step import with_noise

    x = torch.zeros(4, 3, 64, 64)
    assert with_noise(x, 0.0) is x
    assert with_noise(x, 0.5).std().item() == pytest.approx(0.5, rel=0.05)
    result = tiny_train(tmp_path / "r", steps=3, label_smoothing=0.1, instance_noise=0.1)
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert result.step == 3 and all(r["loss_d"] > 0 for r in rows)
    assert json.loads((tmp_path / "r" / "config.json").read_text())["train"]["label_smoothing"] == 0.1


def test_g_step_through_a_frozen_d_gives_the_same_weights(monkeypatch):
    """G's update runs D with its weights out of autograd (no D weight gradients to compute or
    reduce): every weight after three steps is bit-identical to a G step through a live D, D's
    gradients are those of its own loss alone, and D is trainable again afterwards."""
    import contextlib
    import copy

    from train import step as step_module
    from train.config import ModelConfig, TrainConfig
    from train.models import build_models

    cfg = TrainConfig(label_smoothing=0.1, instance_noise=0.1)
    torch.manual_seed(0)
    g0, d0 = build_models(ModelConfig(ngf=8, ndf=8, nz=16))
    real, z = torch.rand(8, 3, 64, 64) * 2 - 1, torch.randn(8, 16)

    def three_steps():
        g, d = copy.deepcopy(g0), copy.deepcopy(d0)
        opt_g, opt_d = torch.optim.Adam(g.parameters(), 2e-4), torch.optim.Adam(d.parameters(), 2e-4)
        torch.manual_seed(1)  # the instance noise
        for i in range(3):
            step_module.gan_step(g, d, opt_g, opt_d, real, z, cfg, i, contextlib.nullcontext())
        return g, d

    g_frozen, d_frozen = three_steps()
    grads_frozen = [p.grad.clone() for p in d_frozen.parameters()]
    monkeypatch.setattr(step_module, "frozen", contextlib.contextmanager(lambda d: (yield d)))
    g_live, d_live = three_steps()
    _assert_same_weights(g_frozen.state_dict(), g_live.state_dict())
    _assert_same_weights(d_frozen.state_dict(), d_live.state_dict())
    assert all(p.requires_grad for p in d_frozen.parameters())
    # through a live D, G's loss adds to D's gradients (discarded by D's next zero_grad)
    assert any(not torch.equal(a, p.grad) for a, p in zip(grads_frozen, d_live.parameters()))


def test_augmentation_translates_and_cuts_out_and_passes_gradients():
    from train.augment import augment, cutout, parse_policy, translate

    torch.manual_seed(0)
    x = (torch.rand(16, 3, 64, 64) + 1.0).requires_grad_()  # no zeros of its own
    shifted = translate(x)
    for i in range(16):  # each image is the input moved by at most 8 px, zero-filled
        img, out = x[i].detach(), shifted[i].detach()
        found = [(dy, dx) for dy in range(-8, 9) for dx in range(-8, 9)
                 if torch.equal(out[:, max(0, -dy):64 - max(0, dy), max(0, -dx):64 - max(0, dx)],
                                img[:, max(0, dy):64 - max(0, -dy), max(0, dx):64 - max(0, -dx)])]
        assert found
        dy, dx = found[0]
        assert int((out[0] == 0).sum()) == 64 * 64 - (64 - abs(dy)) * (64 - abs(dx))
    cut = cutout(x).detach()
    zeros = (cut == 0).all(dim=1)  # the same pixels in every channel
    assert ((cut == 0).any(dim=1) == zeros).all()
    for i in range(16):  # one axis-aligned square of at most 32 x 32, the rest untouched
        rows, cols = zeros[i].nonzero(as_tuple=True)
        assert 0 < len(rows) <= 32 * 32
        h, w = int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1
        assert len(rows) == h * w and h <= 32 and w <= 32
        assert torch.equal(cut[i][:, ~zeros[i]], x[i].detach()[:, ~zeros[i]])
    augment(x, parse_policy("translation,cutout")).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # G's gradient flows through the view
    assert augment(x, ()) is x
    with pytest.raises(ValueError, match="unknown augmentation 'flip'"):
        parse_policy("translation,flip")
