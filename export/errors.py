"""Export's typed errors (all DcganError: the CLI prints them as one line, exit 1)."""

from runtime.errors import DcganError


class ExportError(DcganError):
    """The input cannot be exported, or a dependency is missing."""


class VerificationError(ExportError):
    """An exported model's outputs are further from the PyTorch reference than allowed."""
