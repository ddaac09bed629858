import pytest

torch = pytest.importorskip("torch")

from runtime.cli_support import run_app  # noqa: E402
from train.cli import app  # noqa: E402

TINY = ["--data", "shapes:64", "--ngf", "8", "--ndf", "8", "--nz", "16", "--batch-size", "16",
        "--workers", "0"]


def _run(argv, capsys):
    code = run_app(app, argv, prog="dcgan-train")
    captured = capsys.readouterr()
    return code, captured.err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.slow
def test_trains_then_refuses_to_clobber(tmp_path, capsys):
    out = str(tmp_path / "r")
    code, _ = _run([*TINY, "--steps", "2", "--out", out], capsys)
    assert code == 0 and (tmp_path / "r" / "checkpoints" / "last.pt").exists()
    code, err = _run([*TINY, "--steps", "2", "--out", out], capsys)
    assert code == 1
    assert "already holds a run — pass --resume" in _one_error_line(err)
    code, _ = _run([*TINY, "--steps", "3", "--out", out, "--resume"], capsys)
    assert code == 0


@pytest.mark.parametrize("argv, code, message", [
    (["--bogus"], 2, "No such option: --bogus"),
    (["--batch-size", "0"], 2, "--batch-size"),
    (["--latent", "cauchy"], 2, "--latent must be one of normal, uniform"),
    (["--data", "/nope"], 1, "--data /nope does not exist"),
    (["--data", "shapes:8"], 1, "fewer than one batch"),
])
def test_errors_are_one_line_with_exit_codes(tmp_path, capsys, argv, code, message):
    got, err = _run([*TINY, "--steps", "1", "--out", str(tmp_path / "r"), *argv], capsys)
    assert got == code
    assert message in _one_error_line(err)


def test_bf16_is_refused_where_the_cpu_would_emulate_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    code, err = _run([*TINY, "--steps", "1", "--out", str(tmp_path / "r"), "--device", "cpu",
                      "--bf16"], capsys)
    assert code == 1
    assert "--bf16 autocast needs native bf16 and this CPU" in _one_error_line(err)
    assert not (tmp_path / "r").exists()


def test_debug_shows_traceback(tmp_path, capsys):
    code, err = _run([*TINY, "--data", "/nope", "--out", str(tmp_path / "r"), "--debug"], capsys)
    assert code == 1 and "Traceback" in err
