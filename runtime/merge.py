"""dcgan-merge: join dcgan-generate runs made as parts (--shard i/k, e.g. one per machine) into
one data set: the parts' files linked (or copied) into one directory, with one manifest."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from runtime.cli_support import Debug, new_app, run_app
from runtime.errors import DcganError
from runtime.files import atomic_write_text, sha256_file
from runtime.outdir import claimed, contents
from runtime.writer import NPY_NAME, file_name, sync_directory

app = new_app(__doc__)
# what every part must share to belong to one data set
SAME = ("model_sha256", "precision", "backend", "seed", "format", "latent", "nz", "index_width",
        "shard_size")


def _read_part(path: Path) -> dict:
    try:
        record = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise DcganError(f"{path} is not a dcgan-generate output directory ({e}) — pass the --out "
                         "directories of the parts") from None
    if record.get("status") != "complete":
        raise DcganError(f"{path} is an unfinished run — finish it with dcgan-generate ... --resume "
                         "first")
    return record


def _place(src: Path, dst: Path) -> None:
    """Hard-link src as dst (no copy, the parts stay as they are), else copy it."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


@app.command()
def main_command(
    parts: Annotated[list[Path], typer.Argument(help="The parts' output directories.")],
    out: Annotated[Path, typer.Option(help="Directory for the merged data set.")] = ...,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier merge in --out.")] = False,
    debug: Debug = False,
) -> None:
    """Merge dcgan-generate parts into one data set. The parts must come from one artifact,
    seed and format, and their index ranges must join without gap or overlap."""
    records = sorted(((p, _read_part(p)) for p in parts), key=lambda pr: pr[1]["first_index"])
    base = records[0][1]
    for path, record in records[1:]:
        for key in SAME:
            if record.get(key) != base.get(key):
                raise DcganError(f"{path} has {key} {record.get(key)!r}, {records[0][0]} has "
                                 f"{base.get(key)!r} — the parts are not one data set")
    for (pa, a), (pb, b) in zip(records, records[1:]):
        end = a["first_index"] + a["count"]
        if b["first_index"] != end:
            what = "gap" if b["first_index"] > end else "overlap"
            raise DcganError(f"{what} between {pa} (images {a['first_index']}..{end - 1}) and {pb} "
                             f"(from {b['first_index']}) — pass every part, each once")
    out.mkdir(parents=True, exist_ok=True)
    with claimed(out, "dcgan-merge"):
        if contents(out):
            if not overwrite:
                raise DcganError(f"{out} is not empty — pass --overwrite or pick another --out")
            for p in contents(out):
                if p.is_file():
                    p.unlink()
        merged = {k: v for k, v in base.items() if k not in ("shards", "file", "sha256", "shard")}
        merged.update(first_index=base["first_index"], count=sum(r["count"] for _, r in records),
                      parts=[{"path": str(p), "first_index": r["first_index"], "count": r["count"]}
                             for p, r in records])
        fmt, width = base["format"], base["index_width"]
        if fmt == "tar":
            merged["shards"] = []
            for path, record in records:
                for shard in record["shards"]:
                    _place(path / shard["file"], out / shard["file"])
                    merged["shards"].append(shard)
        elif fmt == "npy":
            arrays = [np.load(p / NPY_NAME, mmap_mode="r") for p, _ in records]
            with open(out / NPY_NAME, "wb") as f:
                np.save(f, np.concatenate(arrays))
            merged.update(file=NPY_NAME, sha256=sha256_file(out / NPY_NAME))
        else:
            for path, record in records:
                for i in range(record["first_index"], record["first_index"] + record["count"]):
                    name = file_name(i, width, fmt)
                    _place(path / name, out / name)
        sync_directory(out)
        atomic_write_text(out / "manifest.json", json.dumps(merged, indent=2) + "\n")
    typer.echo(f"merged {len(records)} parts, {merged['count']} images -> {out}{os.sep}")


def main() -> None:
    with contextlib.suppress(BrokenPipeError):
        raise SystemExit(run_app(app, prog="dcgan-merge"))


if __name__ == "__main__":
    main()
