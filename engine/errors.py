"""One exception root with families, so the API maps every engine failure in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class FunnelError(Exception):
    """Root of every error the engine raises on purpose; `str()` says what to fix."""

    code = "funnel_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable detail the API puts into its problem body."""
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a workflow file: where it is and what to do about it."""

    file: str
    message: str
    element: str | None = None
    line: int | None = None
    severity: str = "error"  # "error" stops loading; "warning" is advice

    def __str__(self) -> str:
        where = self.file
        if self.line:
            where += f":{self.line}"
        if self.element:
            where += f" [{self.element}]"
        return f"{where}: {self.severity}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "element": self.element,
            "severity": self.severity,
            "message": self.message,
        }


class DefinitionError(FunnelError):
    """A workflow file cannot be loaded or run; carries every problem found, not just the first."""

    code = "definition_error"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"the workflow definition has {len(problems)} problem(s):\n{lines}")

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "problems": [p.to_dict() for p in self.problems]}


class ExpressionError(FunnelError):
    """An expression from a workflow file broke a sandbox rule or failed while running."""

    code = "expression_error"


@dataclass(frozen=True)
class UnmetCriterion:
    """A stage-exit criterion that the data does not satisfy, with the message saying what to do."""

    criterion: str
    message: str
    detail: str | None = None
    alternatives: list[UnmetCriterion] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"criterion": self.criterion, "message": self.message}
        if self.detail:
            out["detail"] = self.detail
        if self.alternatives:
            out["alternatives"] = [a.to_dict() for a in self.alternatives]
        return out


class TransitionRefused(FunnelError):
    """A stage move was refused; lists every unmet criterion (or the policy that forbids it)."""

    code = "transition_refused"

    def __init__(self, message: str, unmet: list[UnmetCriterion] | None = None) -> None:
        self.unmet = unmet or []
        text = message
        if self.unmet:
            text += "".join(f"\n  - {u.criterion}: {u.message}" for u in self.unmet)
        super().__init__(text)
        self.message = message

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "unmet": [u.to_dict() for u in self.unmet]}


class InvalidInput(FunnelError):
    """Submitted data has the wrong shape or type; names the field."""

    code = "invalid_input"

    def __init__(self, message: str, field_name: str | None = None) -> None:
        super().__init__(message)
        self.field = field_name

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "field": self.field}


class NotFound(FunnelError):
    """An id that does not exist (instance, task, definition...)."""

    code = "not_found"


class Conflict(FunnelError):
    """Another writer changed the row first (optimistic concurrency) or the call is out of order."""

    code = "conflict"

    def __init__(self, message: str, current_version: int | None = None) -> None:
        super().__init__(message)
        self.current_version = current_version

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "current_version": self.current_version}


class WorkflowFailed(FunnelError):
    """The workflow definition failed while running (a script or condition error); nothing was written."""

    code = "workflow_failed"


class Forbidden(FunnelError):
    """The actor is known but their role does not allow this action; says which role would."""

    code = "forbidden"
