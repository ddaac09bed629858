"""dcgan-merge: join dcgan-generate runs made as parts (--shard i/k, e.g. one per machine) into
one data set: the parts' files linked (or copied) into one directory, with one run record.

Every file is checked against its part's checksums before it is placed, names come from each
part's index range (never from its record's text), and a merge that fails removes what it placed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from runtime.cli_support import Debug, new_app, run_app
from runtime.errors import DcganError
from runtime.files import atomic_open
from runtime.outdir import claimed, contents, refuse_to_replace
from runtime.run_record import DATASET_KEYS, NPY_NAME, Checksums, RecordError, RunRecord
from runtime.writer import sync_directory

app = new_app(__doc__)
NPY_ROWS = 4096  # images per slice when joining .npy parts


def _read_part(path: Path) -> RunRecord:
    try:
        record = RunRecord.read(path)
    except RecordError as e:
        raise DcganError(f"{e} — pass the --out directories of the parts") from None
    if record.status != "complete":
        raise DcganError(f"{path} is an unfinished run — finish it with dcgan-generate ... --resume "
                         "first")
    return record


def _verified_files(path: Path, record: RunRecord) -> list[tuple[Path, str, str]]:
    """(file, name, sha256) of each of the part's files, each checked against its checksums."""
    checksums = Checksums(path).load()
    files = []
    for name in record.names():
        if not checksums.verified(path, name):
            raise DcganError(f"{path / name} is missing or does not match its checksum — run "
                             f"dcgan-generate ... --resume with the part's options in {path} to "
                             "write it again")
        files.append((path / name, name, checksums.entries[name]))
    return files


def _place(src: Path, dst: Path) -> None:
    """Hard-link src as dst (no copy, the parts stay as they are), else copy it. `dst` never
    exists here: the output directory was cleared of this merge's names first."""
    try:
        os.link(src, dst)
    except FileExistsError:
        raise DcganError(f"{dst} appeared during the merge — another process writes into --out") from None
    except OSError:
        shutil.copy2(src, dst)


def _clear_earlier_merge(out: Path, parts: list[Path], overwrite: bool) -> None:
    """Empty --out of an earlier merge's own files; refuse anything else (a user's files, an
    artifact, another run) and never touch the parts given (which may be folders inside it)."""
    given = {p.resolve() for p in parts}
    held = [p for p in contents(out) if p.resolve() not in given]
    if not held:
        return
    if not overwrite:
        raise DcganError(f"{out} is not empty — pass --overwrite to replace an earlier merge, or "
                         "pick another --out")
    try:
        owned = RunRecord.read(out).owned()
    except RecordError:
        raise DcganError(f"{out} holds files that no dcgan-merge or dcgan-generate wrote ("
                         f"{', '.join(sorted(p.name for p in held)[:3])}) — pick another --out") from None
    foreign = sorted(p.name for p in held if p.name not in owned)
    if foreign:
        raise DcganError(f"{out} holds files that are not its data set's ({', '.join(foreign[:3])}) "
                         "— move them, or pick another --out")
    for p in held:
        if p.is_file():
            p.unlink()


@app.command()
def merge_command(
    parts: Annotated[list[Path], typer.Argument(help="The parts' output directories.")],
    out: Annotated[Path, typer.Option(help="Directory for the merged data set.")] = ...,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier merge in --out.")] = False,
    debug: Debug = False,
) -> None:
    """Merge dcgan-generate parts into one data set. The parts must come from one artifact,
    seed and format, and their index ranges must join without gap or overlap."""
    if out.exists() and not out.is_dir():
        raise DcganError(f"--out {out} is a file — give a directory")
    refuse_to_replace(out, parts)  # --out must not be a part, nor inside one
    records = sorted(((p, _read_part(p)) for p in parts), key=lambda pr: pr[1].first_index)
    (p0, base) = records[0]
    for path, record in records[1:]:
        different = record.difference(base, DATASET_KEYS)
        if different:
            raise DcganError(f"{path} and {p0} differ in {different} — the parts are not one data set")
    for (pa, a), (pb, b) in zip(records, records[1:]):
        end = a.first_index + a.count
        if b.first_index != end:
            what = "gap" if b.first_index > end else "overlap"
            raise DcganError(f"{what} between {pa} (images {a.first_index}..{end - 1}) and {pb} "
                             f"(from {b.first_index}) — pass every part, each once")
    files = [(path, _verified_files(path, record)) for path, record in records]

    out.mkdir(parents=True, exist_ok=True)
    with claimed(out, "dcgan-merge"):
        _clear_earlier_merge(out, parts, overwrite)
        merged = RunRecord(**{**vars(base), "writer": {}, "shard": None, "status": "complete",
                              "first_index": base.first_index,
                              "count": sum(r.count for _, r in records),
                              "parts": [{"path": str(p), "first_index": r.first_index,
                                         "count": r.count} for p, r in records]})
        checksums = Checksums(out)
        placed: list[Path] = []
        try:
            if base.format == "npy":
                _concatenate(out, [path / NPY_NAME for path, _ in records], checksums, placed)
                merged.writer = {"file": NPY_NAME, "sha256": checksums.entries[NPY_NAME]}
            else:
                for _, part_files in files:
                    for src, name, digest in part_files:
                        _place(src, out / name)
                        placed.append(out / name)
                        checksums.entries[name] = digest
                if base.format == "tar":
                    merged.writer = {"shard_size": base.shard_size,
                                     "shards": [{**s, "sha256": checksums.entries[s["file"]]}
                                                for _, r in records for s in r.writer["shards"]]}
                else:
                    merged.writer = {"file_pattern": base.writer.get("file_pattern")}
            merged.names()  # the merged record checks out before it is written
            checksums.finish([name for _, part_files in files for _, name, _ in part_files]
                             if base.format != "npy" else [NPY_NAME])
            sync_directory(out)
            merged.write(out)
        except BaseException:  # a failed merge leaves nothing of itself behind
            checksums.close()
            for p in [*placed, checksums.path]:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()
            raise
    typer.echo(f"merged {len(records)} parts, {merged.count} images -> {out}{os.sep}")


def _concatenate(out: Path, arrays: list[Path], checksums: Checksums, placed: list[Path]) -> None:
    """One images.npy from the parts' arrays, written under a temporary name and renamed whole."""
    loaded = [np.load(a, mmap_mode="r") for a in arrays]
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {
        "descr": "|u1", "fortran_order": False,
        "shape": (sum(len(a) for a in loaded), *loaded[0].shape[1:])})
    digest = hashlib.sha256()
    placed.append(out / NPY_NAME)  # removed again if the merge fails after this point
    with atomic_open(out / NPY_NAME, overwrite=False, durable=False) as f:
        def write(chunk: bytes) -> None:
            f.write(chunk)
            digest.update(chunk)
        write(header.getvalue())
        for a in loaded:
            for i in range(0, len(a), NPY_ROWS):  # a bounded slice at a time: memory stays flat
                write(np.ascontiguousarray(a[i:i + NPY_ROWS], np.uint8).tobytes())
    checksums.entries[NPY_NAME] = digest.hexdigest()


def main() -> None:
    with contextlib.suppress(BrokenPipeError):
        raise SystemExit(run_app(app, prog="dcgan-merge"))


if __name__ == "__main__":
    main()
