"""The run record, OUT/manifest.json: what a dcgan-generate run (or a dcgan-merge of its parts)
wrote, how to regenerate any image of it, and which files in OUT are its own.

This module is the record's one owner: dcgan-generate writes it, `--resume` and dcgan-merge read
and compare it, the analyses read it. Beside it, OUT/SHA256SUMS (`sha256sum -c` format) holds the
hash of every finished file, appended as each one is written: a resumed run or a merge trusts a
file only when its bytes still match, so a file torn by a crash or a power loss is written again
(resume) or refused (merge), never recorded as good.

The record's `kind` tells it from the artifact manifest, which has the same file name.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from runtime.errors import DcganError
from runtime.files import atomic_write_text, sha256_file

RECORD_NAME = "manifest.json"
CHECKSUMS_NAME = "SHA256SUMS"
KIND = "dcgan-generate-run"
NPY_NAME = "images.npy"
# What every image of one data set shares: two runs (a run and its resume, or the parts of a
# merge) that differ in any of these would mix two data sets.
DATASET_KEYS = ("model_sha256", "precision", "backend", "seed", "format", "latent", "nz",
                "index_width", "shard_size")
RANGE_KEYS = ("first_index", "count")  # a resume must also cover the same images
WRITER_KEYS = ("file_pattern", "shards", "file", "sha256")  # what the writer adds when it finishes
_SHARD_NAME = re.compile(r"shard-\d+\.tar")


class RecordError(DcganError):
    """A run record that is missing, unreadable, or not dcgan-generate's."""


def file_name(index: int, width: int, fmt: str) -> str:
    return f"{index:0{width}d}.{fmt}"


def shard_name(first: int, width: int) -> str:
    """A tar shard is named by the global index of its first image, so shards written by
    different machines (--shard i/k) never collide and merge by a plain union."""
    return f"shard-{first:0{width}d}.tar"


def shard_starts(first: int, count: int, shard_size: int) -> list[int]:
    return list(range(first, first + count, shard_size))


@dataclass
class RunRecord:
    artifact: str  # as given on the command line
    model_file: str
    model_sha256: str
    precision: str
    backend: str
    seed: int
    first_index: int  # global index of the first image
    count: int
    shard: str | None  # "i/k" of a part, None for a whole run
    latent: str
    nz: int
    format: str  # png, jpg, tar or npy
    index_width: int  # zero-padding of every name, the same for all parts of a range
    batch_size: int
    shard_size: int | None  # images per tar shard; None for other formats
    status: str = "incomplete"  # "complete" once every file is written and synced
    writer: dict = field(default_factory=dict)  # WRITER_KEYS the writer reported at the end
    parts: list | None = None  # a merge: the parts it joined
    kind: str = KIND

    @property
    def regenerate(self) -> str:
        return (f"dcgan-generate {self.artifact} --seed {self.seed} --start INDEX -n 1 "
                f"--backend {self.backend} --precision {self.precision} --out DIR")

    # -- the file --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("writer", "parts")}
        d.update(self.writer)
        if self.parts is not None:
            d["parts"] = self.parts
        d["checksums"] = CHECKSUMS_NAME
        d["regenerate"] = self.regenerate
        return d

    @classmethod
    def from_dict(cls, d: dict, where: str = "the run record") -> RunRecord:
        """Parse and validate a record (kind, field types, every file name it lists)."""
        if not isinstance(d, dict) or d.get("kind", KIND if "regenerate" in d else None) != KIND:
            raise RecordError(f"{where} is not a dcgan-generate run record")
        known = {f.name for f in fields(cls)} - {"writer"}
        try:
            record = cls(**{k: v for k, v in d.items() if k in known},
                         writer={k: d[k] for k in WRITER_KEYS if k in d})
        except TypeError as e:
            raise RecordError(f"{where} is incomplete ({e})") from None
        for name in ("seed", "first_index", "count", "index_width", "nz", "batch_size"):
            value = getattr(record, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise RecordError(f"{where}: {name} must be an int >= 0, got {value!r}")
        record.names()  # every name it lists checks out, or RecordError
        return record

    def write(self, out: Path) -> None:
        atomic_write_text(out / RECORD_NAME, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def read(cls, out: Path) -> RunRecord:
        path = out / RECORD_NAME
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise RecordError(f"{out} holds no dcgan-generate run ({RECORD_NAME} is missing)") from None
        except (OSError, ValueError) as e:
            raise RecordError(f"{path} is unreadable ({e})") from None
        return cls.from_dict(data, str(path))

    # -- comparing runs ----------------------------------------------------------------------
    def difference(self, other: RunRecord, keys: tuple[str, ...]) -> str | None:
        """'KEY: A vs B' for the first of `keys` where the two differ, else None."""
        for k in keys:
            a, b = getattr(self, k), getattr(other, k)
            if a != b:
                return f"{k} {a!r} vs {b!r}"
        return None

    # -- the files it owns ---------------------------------------------------------------------
    def names(self) -> list[str]:
        """The data files of this run, in index order: computed from the range, never taken
        from the record's text as given (a tampered record cannot name a path outside OUT)."""
        fmt, width = self.format, self.index_width
        if fmt == "npy":
            return [NPY_NAME]
        if fmt != "tar":
            return [file_name(i, width, fmt) for i in range(self.first_index, self.first_index + self.count)]
        shards = self.writer.get("shards")
        if shards is None:  # not finished yet: the grid the writer follows
            return [shard_name(s, width) for s in shard_starts(self.first_index, self.count,
                                                                self.shard_size or 1)]
        names, expected = [], self.first_index
        for shard in shards:  # a merge's shards follow its parts' grids: check they tile the range
            name = shard.get("file") if isinstance(shard, dict) else None
            if (name != shard_name(expected, width) or not _SHARD_NAME.fullmatch(name)
                    or not isinstance(shard.get("count"), int) or shard["count"] < 1):
                raise RecordError(f"the run record lists a bad tar shard {name!r} (expected "
                                  f"{shard_name(expected, width)}) — the record was edited or is damaged")
            names.append(name)
            expected += shard["count"]
        if expected != self.first_index + self.count:
            raise RecordError("the run record's tar shards do not cover its images — the record "
                              "was edited or is damaged")
        return names

    def owned(self) -> set[str]:
        """Every name in OUT that this run wrote: its data files, the record and the checksums."""
        return {*self.names(), RECORD_NAME, CHECKSUMS_NAME}


def is_run_record(path: Path) -> bool:
    """Whether `path` (a manifest.json) is a run record rather than, say, an artifact manifest."""
    try:
        RunRecord.from_dict(json.loads(path.read_text()), str(path))
    except (OSError, ValueError, RecordError):
        return False
    return True


class Checksums:
    """OUT/SHA256SUMS: one `HASH  NAME` line per finished file, appended (and flushed) as files
    are renamed into place, rewritten sorted when the run completes. `sha256sum -c SHA256SUMS`
    checks a data set with no dcgan installed."""

    def __init__(self, out: Path):
        self.path = out / CHECKSUMS_NAME
        self.entries: dict[str, str] = {}
        self._file = None

    def load(self) -> Checksums:
        """Read what an earlier (maybe interrupted) run recorded; a torn last line is ignored."""
        self.entries = {}
        try:
            text = self.path.read_text(errors="replace")
        except FileNotFoundError:
            return self
        for line in text.splitlines():
            digest, _, name = line.partition("  ")
            if len(digest) == 64 and name and "/" not in name:
                self.entries[name] = digest
        return self

    def add(self, name: str, digest: str) -> None:
        if self._file is None:
            self._file = open(self.path, "a")
        self._file.write(f"{digest}  {name}\n")
        self._file.flush()
        self.entries[name] = digest

    def verified(self, directory: Path, name: str) -> bool:
        """Whether `directory/name` exists and its bytes match the hash recorded for it."""
        path = directory / name
        return name in self.entries and path.is_file() and sha256_file(path) == self.entries[name]

    def finish(self, names: list[str]) -> None:
        """Rewrite the file with exactly `names`, in their order (atomically)."""
        self.close()
        atomic_write_text(self.path, "".join(f"{self.entries[n]}  {n}\n" for n in names))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
