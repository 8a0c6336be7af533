"""Console output: one rich console on stderr for progress and messages, stdout for reports."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


def step(message: str) -> None:
    """Announce one stage of long work."""
    err.print(f"[bold cyan]==>[/] {message}")


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {message}")


class ByteProgress:
    """A byte-counting progress bar (downloads, packing, extraction)."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task

    def advance(self, nbytes: int) -> None:
        self._progress.advance(self._task, nbytes)

    def describe(self, text: str) -> None:
        self._progress.update(self._task, description=text)


@contextmanager
def byte_progress(description: str, total: int | None) -> Iterator[ByteProgress]:
    """Show a byte progress bar on stderr while the block runs (plain lines when not a tty)."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
        disable=not sys.stderr.isatty(),
    )
    with progress:
        task = progress.add_task(description, total=total)
        yield ByteProgress(progress, task)
    if not sys.stderr.isatty():
        err.print(f"    {description}: done")
