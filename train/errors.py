"""The training stage's errors: each one line that says what went wrong and what to do."""

from __future__ import annotations

import signal
from pathlib import Path

from runtime.errors import DcganError


class TrainingError(DcganError):
    """A run that cannot start or cannot go on (bad run dir, diverged loss, ...)."""


class Interrupted(DcganError):
    """SIGINT/SIGTERM arrived; a checkpoint was saved. `exit_code` is 128 + signal number."""

    def __init__(self, signum: int, checkpoint: Path):
        self.exit_code = 128 + signum
        self.checkpoint = checkpoint
        super().__init__(f"stopped by {signal.Signals(signum).name}; checkpoint saved to {checkpoint}")
