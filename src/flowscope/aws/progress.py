"""A rich progress bar for downloads (bytes with a total, or events counted as they come)."""

from __future__ import annotations

from typing import Any


class RichProgress:
    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        self._columns = {
            "bytes": (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                      TransferSpeedColumn(), TimeElapsedColumn()),
            "events": (SpinnerColumn(), TextColumn("{task.description}"),
                       TextColumn("{task.completed:,.0f} records"), TimeElapsedColumn())}
        self._console = console
        self._progress: Any = None
        self._task: Any = None
        self._make = Progress

    def start(self, description: str, total: int | None, unit: str) -> None:
        self.stop()
        self._progress = self._make(*self._columns[unit], console=self._console,
                                    transient=False)
        self._progress.start()
        self._task = self._progress.add_task(description, total=total)

    def advance(self, n: int) -> None:
        if self._progress is not None:
            self._progress.advance(self._task, n)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
