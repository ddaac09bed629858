"""The training stage's errors: each one line that says what went wrong and what to do."""

from __future__ import annotations

from runtime.errors import DcganError


class TrainingError(DcganError):
    """A run that cannot start or cannot go on (bad run dir, diverged loss, ...)."""
