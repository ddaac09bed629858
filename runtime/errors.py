"""Typed errors. Every expected failure derives from DcganError; CLIs print it as one line."""

import signal


class DcganError(Exception):
    """An expected failure whose message says what is wrong and what to do."""

    exit_code = 1


class ArtifactError(DcganError):
    """An artifact or model file is missing, unreadable, of an unknown version or tampered with."""


class BackendUnavailable(DcganError):
    """The requested backend cannot run here (package, GPU or engine missing)."""


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException, like KeyboardInterrupt: cleanup runs, and no
    `except Exception` swallows it. The message says what was kept; `exit_code` is 128 + signal."""

    def __init__(self, signum: int, message: str | None = None):
        name = signal.Signals(signum).name
        super().__init__(message or f"stopped by {name} — nothing half-written was left; run the "
                                    "command again to finish")
        self.signum, self.exit_code = signum, 128 + signum
