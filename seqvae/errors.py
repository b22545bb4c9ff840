"""Typed exceptions that callers (the CLI, the dashboard) can show as plain sentences."""

from __future__ import annotations

from collections.abc import Sequence


class SeqVAEError(Exception):
    """Base class of every error the library raises on purpose."""


class LogFormatError(SeqVAEError, ValueError):
    """A behaviour log cannot be read as asked.

    The message names the file, the column and up to five offending lines, and says what to do.
    The same facts are kept as attributes so that a page can lay them out.

    Attributes:
        source: the file name (or ``"<DataFrame>"``) the log came from.
        problem: what is wrong, in one sentence.
        column: the column concerned, when there is one.
        lines: up to five 1-based line numbers in the source that show the problem.
        fix: what the user can do about it.
    """

    def __init__(
        self,
        source: str,
        problem: str,
        *,
        column: str | None = None,
        lines: Sequence[int] = (),
        fix: str = "",
    ) -> None:
        self.source = source
        self.problem = problem
        self.column = column
        self.lines = [int(n) for n in list(lines)[:5]]
        self.fix = fix
        super().__init__(self._compose())

    def _compose(self) -> str:
        parts = [f"{self.source}: {self.problem}"]
        if self.column is not None:
            parts.append(f"column: {self.column!r}")
        if self.lines:
            parts.append("line" + ("s " if len(self.lines) > 1 else " ")
                         + ", ".join(str(n) for n in self.lines))
        message = " — ".join([*parts[:1], "; ".join(parts[1:])] if len(parts) > 1 else parts)
        if self.fix:
            message += f". Fix: {self.fix}"
        return message


class NotFittedError(SeqVAEError, RuntimeError):
    """A model was asked to predict before it was fitted."""


class TrainingDataError(SeqVAEError, ValueError):
    """The data cannot train a model (too few items, no user with two events, ...)."""
