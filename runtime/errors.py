"""Typed errors. Every expected failure derives from DcganError; CLIs print it as one line."""


class DcganError(Exception):
    """An expected failure whose message says what is wrong and what to do."""

    exit_code = 1


class ArtifactError(DcganError):
    """An artifact or model file is missing, unreadable, of an unknown version or tampered with."""


class BackendUnavailable(DcganError):
    """The requested backend cannot run here (package, GPU or engine missing)."""
