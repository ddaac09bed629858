"""What every dcgan-* command shares: one-line errors, exit codes, logging, the --debug switch."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from runtime.errors import DcganError, Interrupted

Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")]


def new_app(help_text: str) -> typer.Typer:
    return typer.Typer(help=help_text, add_completion=False, pretty_exceptions_enable=False,
                       rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})


def check_choice(value: str, choices: tuple[str, ...] | list[str], option: str) -> None:
    """A usage error (exit 2) unless `value` is one of `choices`."""
    if value not in choices:
        raise typer.BadParameter(f"{option} must be one of {', '.join(choices)}, got {value!r}")


def default_input(given: Path | None, default: Path, what: str, maker: str, writes: str) -> Path:
    """`given`, else `default` (said in the log): a missing default is a one-line error naming
    the command that creates it."""
    if given is not None:
        return given
    if not default.exists():
        raise DcganError(f"no {what} at {default} — run {maker} first (it writes {writes}), or "
                         f"pass a {what} path")
    logging.getLogger(maker).info("using %s (default %s)", default, what)
    return default


def fail(message: str) -> None:
    """Print `error: message` on stderr (the message says what is wrong — what to do)."""
    print(f"error: {message}", file=sys.stderr)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn the first SIGINT/SIGTERM into `Interrupted`, and ignore any that follow, so the
    cleanup it starts (temporary files removed, threads joined) is not itself cut short."""
    received: list[int] = []

    def handler(signum, _frame):
        if not received:
            received.append(signum)
            raise Interrupted(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        # Once interrupted, the command is on its way out: a repeated Ctrl-C while the error is
        # printed must not turn the exit code into a bare "killed by SIGINT", so keep ignoring.
        for s, h in previous.items():
            signal.signal(s, signal.SIG_IGN if received else h)


def _interrupting_signal(error: BaseException) -> int | None:
    """The signal of an `Interrupted` somewhere in `error`'s chain of causes, if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, Interrupted):
            return error.signum
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def run_app(app: typer.Typer, argv: list[str] | None = None, prog: str | None = None) -> int:
    """Run a typer app; turn errors into one stderr line and an exit code.

    Exit codes: 0 ok, 1 failure, 2 bad usage, 128+signal when interrupted (130 SIGINT, 143 SIGTERM).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO,
                         format="%(levelname)s %(name)s: %(message)s" if debug else "%(message)s")
    prog = prog or (sys.argv[0].rsplit("/", 1)[-1] if sys.argv else "dcgan")
    in_main_thread = threading.current_thread() is threading.main_thread()
    try:
        with stop_on_signals() if in_main_thread else contextlib.nullcontext():
            # typer returns, rather than raises, the code of an Exit (130 for a KeyboardInterrupt)
            code = app(args=argv, prog_name=prog, standalone_mode=False)
        code = code if isinstance(code, int) else 0
        if code == 130:
            fail("interrupted")
        return code
    except typer.Exit as e:
        return e.exit_code
    except typer.TyperException as e:  # usage errors (exit 2) and other click-level failures
        fail(f"{e.format_message()} — see {prog} --help")
        return e.exit_code
    except typer.Abort:
        fail("aborted")
        return 130
    except Interrupted as e:
        fail(str(e))
        return e.exit_code
    except DcganError as e:
        if debug:
            traceback.print_exc()
        fail(str(e))
        return getattr(e, "exit_code", 1)
    except OSError as e:  # disk full, permissions, a path that is a file, ...
        if debug:
            traceback.print_exc()
        where = f" ({e.filename})" if e.filename else ""
        fail(f"{e.strerror or e}{where} — check the path, its permissions and free disk space")
        return 1
    except KeyboardInterrupt:
        fail("interrupted")
        return 130
    except Exception as e:  # anything unexpected still ends in one line unless --debug
        if (signum := _interrupting_signal(e)) is not None:  # e.g. a C extension's import cut short
            fail(f"stopped by {signal.Signals(signum).name}")
            return 128 + signum
        if debug:
            traceback.print_exc()
        detail = str(e).splitlines()[0] if str(e) else ""
        fail(f"{type(e).__name__}: {detail} — rerun with --debug for the traceback")
        return 1
