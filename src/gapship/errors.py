"""One error root. Every error a user can meet carries the fact, the cause and the next step.

Only the CLI turns these into exit codes; everything else raises.
"""

from __future__ import annotations


class GapshipError(Exception):
    """Root of every error gapship reports to a user.

    ``message`` says what is wrong (one line); ``hint`` says what to do next.
    """

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class SpecError(GapshipError, ValueError):
    """env.toml is missing, unreadable or invalid."""


class TargetError(GapshipError, ValueError):
    """target.json is missing, truncated, not JSON or of an unknown schema."""


class ResolveError(GapshipError):
    """The packages cannot be resolved for the target."""


class FetchError(GapshipError):
    """A file could not be downloaded, or its checksum does not match the lock."""


class StageError(GapshipError):
    """The environment tree could not be made prefix-independent or complete."""


class CompatError(GapshipError):
    """What was staged cannot run on the target (glibc, libstdc++ ...)."""


class BundleError(GapshipError):
    """The bundle could not be written or read."""


class ReplicaError(GapshipError):
    """The offline replica could not be built or entered."""


class ToolMissing(GapshipError, FileNotFoundError):
    """A program gapship needs on the builder is not installed."""
