"""What a run did: one report per step, the run's summary line, and the error a failed step raises."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from .diff import Action


@dataclass(frozen=True)
class StepReport:
    kind: str
    name: str
    host: str
    seconds: float
    ok: bool
    exit_code: int | None = None


@dataclass
class RunReport:
    steps: list[StepReport] = field(default_factory=list)
    unchanged: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(step.ok for step in self.steps)

    @property
    def counts(self) -> dict[str, int]:
        """Successful steps by action."""
        return dict(Counter(step.kind for step in self.steps if step.ok))


class StepFailed(Exception):
    """A step failed; the message names the resource and host and ends with the tail of stderr (redacted)."""

    def __init__(self, message: str, *, report: RunReport, action: Action, exit_code: int | None):
        super().__init__(message)
        self.report = report
        self.action = action
        self.exit_code = exit_code


def _summary(report: RunReport, failed: bool) -> str:
    counts = report.counts
    parts = [f"{counts.get(kind, 0)} {kind}" for kind in ("create", "update", "replace", "delete")]
    parts.append(f"{report.unchanged} unchanged")
    head = "stopped by a failure" if failed else "done"
    return f"[executor] {head} in {report.seconds:.1f} s: {', '.join(parts)}"
