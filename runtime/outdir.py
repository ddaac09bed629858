"""Output directories: claim one for a run, and refuse to overwrite what is not ours to replace.

A directory is claimed with a lock file created with O_EXCL, so two runs aimed at the same
`--out` cannot both pass the emptiness check and overwrite each other's files. A lock whose
process is gone (killed with SIGKILL, say) is taken over.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from runtime.errors import DcganError

LOCK_NAME = ".dcgan.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


@contextlib.contextmanager
def claimed(directory: Path, command: str) -> Iterator[None]:
    """Hold `directory` for this process while the block runs (the directory must exist)."""
    lock = directory / LOCK_NAME
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            break
        except FileExistsError:
            try:
                pid = int(lock.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pid = -1
            if pid > 0 and _alive(pid):
                raise DcganError(f"{directory} is in use by another {command} (pid {pid}) — wait for "
                                 "it to finish, or pick another --out") from None
            with contextlib.suppress(FileNotFoundError):  # its process is gone: a stale lock
                lock.unlink()
    else:
        raise DcganError(f"could not lock {directory} — another run keeps claiming it; pick another --out")
    try:
        os.write(fd, f"{os.getpid()} {command}\n".encode())
        os.close(fd)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def contents(directory: Path) -> list[Path]:
    """What the directory holds, apart from a lock file."""
    return [p for p in directory.iterdir() if p.name != LOCK_NAME] if directory.is_dir() else []


def refuse_to_replace(out: Path, inputs: Iterable[Path], option: str = "--out") -> None:
    """Refuse an `out` that is, or holds, one of the command's own inputs: --overwrite there
    would destroy what the command reads."""
    target = out.resolve()
    for given in inputs:
        path = Path(given).resolve()
        if path == target or target in path.parents:
            raise DcganError(f"{option} {out} holds this command's input {given} — --overwrite "
                             f"would destroy it; pick another {option}")
