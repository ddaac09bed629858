"""dcgan-ray-generate: one data set of N images written by a Ray cluster, the bytes one machine
writes: one Ray task per part of the index range, each running `dcgan-generate --shard i/K`,
then one `dcgan-merge`.

The tasks run the command itself (its typer app, inside the Ray worker) rather than a second
writer: the command already owns the files, the run record, resuming and the checks that make
parts mergeable, so Ray adds only the scheduling. In the worker's own process, not a child, so
a worker that dies takes its part with it: nothing is left running that still holds the part's
directory when Ray retries the task (`max_retries`). A task that finds its part's run record
(OUT/parts/part-i-of-K/manifest.json) passes --resume, so a retried task, or a whole run started
again with --resume after an interruption, writes only what is missing.

Layout under --out, a path every node sees at the same place (NFS, a mounted bucket):

    OUT/parts/part-<i>-of-<K>/   one dcgan-generate run per part
    OUT/dataset/                 the merged data set and its one run record (files hard-linked
                                 from the parts where the file system allows, else copied)

Ray is found as `ray.init()` finds it: --ray-address, else RAY_ADDRESS, else a cluster started
on this machine with `ray start`, else a new local one.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from runtime.backends import BACKENDS
from runtime.cli_support import Debug, _interrupting_signal, check_choice, new_app, run_app
from runtime.errors import DcganError
from runtime.optional import import_ray
from runtime.outdir import contents
from runtime.writer import FORMATS

app = new_app(__doc__)
PARTS, DATASET = "parts", "dataset"


class RunInterrupted(DcganError):
    """SIGINT or SIGTERM stopped the driver: its tasks stop with it, the parts keep what they
    wrote."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name} — the parts keep what they "
                         "wrote; the same command with --resume writes the rest")
        self.exit_code = 128 + signum


class PartFailed(DcganError):
    """A part's dcgan-generate (or the merge) exited with an error; its message is the
    command's own error line."""


@dataclass(frozen=True)
class RayRun:
    """What `generate_on_ray` did.

    Attributes:
        dataset: the merged data set (OUT/dataset).
        parts: each part's dcgan-generate directory, in part order.
        summaries: each part's summary line, as dcgan-generate printed it (a part that was
            resumed says how many images were already there).
        seconds: from the first task submitted to the merge done (Ray's start-up excluded).
    """

    dataset: Path
    parts: list[Path]
    summaries: list[str]
    seconds: float


def part_dirs(out: Path, parts: int) -> list[Path]:
    width = len(str(parts - 1))
    return [out / PARTS / f"part-{i:0{width}d}-of-{parts}" for i in range(parts)]


def parts_on_disk(out: Path) -> int | None:
    """The part count K of the run that `out` holds (from its part directories' names)."""
    counts = {p.name.rsplit("-of-", 1)[1] for p in (out / PARTS).glob("part-*-of-*")}
    if len(counts) > 1:
        raise DcganError(f"{out / PARTS} holds parts of runs split {' and '.join(sorted(counts))} "
                         "ways — pick another --out")
    return int(counts.pop()) if counts else None


class _Tail(io.TextIOBase):
    """A text stream that keeps only its last few KB: a part's progress bar and messages."""

    def __init__(self, keep: int = 4096):
        self.text, self.keep = "", keep

    def write(self, s: str) -> int:
        self.text = (self.text + s)[-self.keep:]
        return len(s)

    def last_line(self) -> str:
        lines = [line for line in self.text.replace("\r", "\n").splitlines() if line.strip()]
        return lines[-1].strip() if lines else ""


def run_command(app: typer.Typer, argv: list[str], prog: str) -> str:
    """Run a dcgan command in this process; return its last line of output, or raise
    PartFailed with its error line (less the "error: " it starts with)."""
    out, err = _Tail(), _Tail()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_app(app, argv, prog=prog)
    if code != 0:
        raise PartFailed(err.last_line().removeprefix("error: ") or f"{prog} exited with {code}")
    return out.last_line()


def run_part(argv: list[str], part: str) -> str:
    """The Ray task: `dcgan-generate ARGV --out PART`, with --resume when PART holds the run
    record of an earlier attempt. Returns the command's summary line."""
    from runtime.cli import app as generate_app

    resume = ["--resume"] if (Path(part) / "manifest.json").exists() else []
    return run_command(generate_app, [*argv, "--out", part, *resume], "dcgan-generate")


def _failure(error: Exception) -> str:
    """One line for a task that failed: the command's own error, or what Ray says happened."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, PartFailed):
        return str(cause)
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def generate_on_ray(artifact: str | Path, out: str | Path, n: int, *, seed: int = 0, start: int = 0,
                    parts: int, options: Sequence[str] = (), cpus_per_task: float = 1,
                    gpus_per_task: float = 0, max_retries: int = 3,
                    on_part: Callable[[int, str], None] | None = None) -> RayRun:
    """Write images start .. start+n-1 of `seed` as `parts` Ray tasks, then merge them.

    Args:
        artifact: the artifact directory, at a path every node sees.
        out: the run's directory, at a path every node sees (see the module docstring).
        n, seed, start: the images, as dcgan-generate's -n, --seed and --start.
        parts: K, the number of tasks (dcgan-generate --shard i/K each). An interrupted run
            finishes only with the same K.
        options: more dcgan-generate options for every part, e.g. ["--format", "tar"].
        cpus_per_task, gpus_per_task: Ray resources each task holds.
        max_retries: how often Ray runs a task again whose worker died.
        on_part: called with (part index, summary line) as each part finishes.

    Ray must be initialized (`ray.init()`), or is initialized as `ray.init()` does.

    Raises:
        PartFailed: a part or the merge failed, with the command's error line; the parts that
            finished are kept, and the same call again writes only what is missing.
    """
    ray = import_ray()
    from runtime.merge import app as merge_app

    artifact, out = Path(artifact).resolve(), Path(out).resolve()
    held = parts_on_disk(out)
    if held not in (None, parts):
        raise DcganError(f"{out} holds a run of {held} parts, not {parts} — finish it with "
                         f"{held} parts (--parts {held}), or pick another --out")
    dirs = part_dirs(out, parts)
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    base = [str(artifact), "-n", str(n), "--seed", str(seed), "--start", str(start), *options]
    task = ray.remote(run_part).options(num_cpus=cpus_per_task, num_gpus=gpus_per_task,
                                        max_retries=max_retries, retry_exceptions=False)
    t0 = time.perf_counter()
    pending = {task.remote([*base, "--shard", f"{i}/{parts}"], str(d)): i for i, d in enumerate(dirs)}
    summaries: list[str] = [""] * parts
    failures: list[tuple[int, str]] = []
    while pending:  # with a timeout: a blocking wait would hold back Ctrl-C until a part ends
        for ref in ray.wait(list(pending), num_returns=1, timeout=0.5)[0]:
            i = pending.pop(ref)
            try:
                summaries[i] = ray.get(ref)
            except ray.exceptions.RayError as e:
                failures.append((i, _failure(e)))
                continue
            if on_part is not None:
                on_part(i, summaries[i])
    if failures:
        i, message = min(failures)
        raise PartFailed(f"part {i} of {parts} failed ({len(failures)} of {parts} did): {message}; "
                         f"the {parts - len(failures)} finished parts are kept, --resume writes the rest")
    dataset = out / DATASET
    merge = [*map(str, dirs), "--out", str(dataset)] + (["--overwrite"] if contents(dataset) else [])
    run_command(merge_app, merge, "dcgan-merge")
    return RayRun(dataset, dirs, summaries, time.perf_counter() - t0)


@app.command()
def main_command(
    artifact: Annotated[Path, typer.Argument(help="Artifact directory, at a path every node sees.")],
    n: Annotated[int, typer.Option("-n", "--count", min=0, help="Number of images.")] = 64,
    out: Annotated[Path, typer.Option(help="Run directory, at a path every node sees: parts in "
                                           "OUT/parts/, the merged data set in OUT/dataset/.")] = ...,
    seed: Annotated[int, typer.Option(min=0, help="Seed: image i of seed s is always the same.")] = 0,
    start: Annotated[int, typer.Option(min=0, help="Global index of the first image.")] = 0,
    parts: Annotated[int | None, typer.Option(
        min=1, help="Ray tasks, one part of the range each [default: the cluster's task slots; "
                    "with --resume, the parts already there].", show_default=False)] = None,
    ray_address: Annotated[str | None, typer.Option(
        help="Ray cluster to run on [default: as ray.init() finds one: RAY_ADDRESS, a cluster "
             "started here with `ray start`, else a new local one].", show_default=False)] = None,
    cpus_per_task: Annotated[float, typer.Option(min=0, help="CPUs each task holds.")] = 1,
    gpus_per_task: Annotated[float, typer.Option(min=0, help="GPUs each task holds (GPU backends).")
                             ] = 0,
    max_retries: Annotated[int, typer.Option(min=0, help="Times Ray reruns a task whose worker "
                                                         "died; the rerun resumes the part.")] = 3,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per inference call.")] = 64,
    backend: Annotated[str, typer.Option(help=f"auto, {', '.join(BACKENDS)}.")] = "auto",
    precision: Annotated[str | None, typer.Option(help="fp32, fp16 or int8 model file [default: "
                                                       "fp32].", show_default=False)] = None,
    format: Annotated[str, typer.Option("--format", help="png, jpg, tar or npy, as "
                                                         "dcgan-generate.")] = "png",
    shard_size: Annotated[int, typer.Option(min=1, help="Images per tar shard (--format tar).")
                          ] = 10000,
    workers: Annotated[int | None, typer.Option(min=1, help="Image-encoding threads per task "
                                                "[default: dcgan-generate's].", show_default=False)
                       ] = None,
    resume: Annotated[bool, typer.Option(help="Finish an interrupted run in --out: same artifact, "
                                              "seed, range, format and parts.")] = False,
    debug: Debug = False,
) -> None:
    """Generate one data set on a Ray cluster: K tasks each write a part as `dcgan-generate
    --shard i/K` does, then `dcgan-merge` joins them into OUT/dataset/, the bytes one machine
    writes for the same seed and range. Failed workers are retried; --resume finishes an
    interrupted run, writing only what is missing.
    """
    check_choice(format, FORMATS, "--format")
    check_choice(backend, ("auto", *BACKENDS), "--backend")  # --precision: checked by each part
    ray = import_ray()
    if not artifact.exists():
        raise DcganError(f"no artifact at {artifact} — pass an artifact directory that every node "
                         "sees (dcgan-export writes one)")
    if out.exists() and not out.is_dir():
        raise DcganError(f"--out {out} is a file — give a directory")
    held = parts_on_disk(out)
    if resume and held is None:
        raise DcganError(f"--resume: {out} holds no dcgan-ray-generate run — drop --resume")
    if not resume and contents(out):
        raise DcganError(f"{out} is not empty — pass --resume to finish the run it holds, or pick "
                         "another --out")
    options = ["--batch-size", str(batch_size), "--backend", backend, "--format", format,
               "--shard-size", str(shard_size)]
    options += ["--precision", precision] if precision else []
    options += ["--workers", str(workers)] if workers else []

    t0 = time.perf_counter()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=ray_address)
    try:
        ray_seconds = time.perf_counter() - t0
        k = parts or held or _task_slots(ray.cluster_resources(), cpus_per_task, gpus_per_task)
        typer.echo(f"{n} images as {k} Ray tasks -> {out}{os.sep}")
        run = generate_on_ray(
            artifact, out, n, seed=seed, start=start, parts=k, options=options,
            cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task, max_retries=max_retries,
            on_part=lambda i, line: typer.echo(f"part {i} of {k}: {line}"))
    except BaseException as e:  # Ctrl-C in Ray's wait comes out as a SystemError it caused
        signum = _interrupting_signal(e)
        if signum is None:
            raise
        raise RunInterrupted(signum) from None
    finally:
        if started_here:
            ray.shutdown()
    typer.echo(f"{n} images in {run.seconds:.2f} s on Ray ({k} parts; Ray start-up {ray_seconds:.2f} s "
               f"more) -> {run.dataset}{os.sep}")


def _task_slots(resources: dict, cpus_per_task: float, gpus_per_task: float) -> int:
    """How many tasks the cluster runs at once with these resources each (at least 1)."""
    slots = [resources.get("CPU", 0) / cpus_per_task] if cpus_per_task else []
    slots += [resources.get("GPU", 0) / gpus_per_task] if gpus_per_task else []
    return max(1, int(min(slots))) if slots else 1


def main() -> None:
    raise SystemExit(run_app(app, prog="dcgan-ray-generate"))


if __name__ == "__main__":
    main()
