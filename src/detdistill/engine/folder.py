"""A run folder: the names of the files one run writes, and the one test of whether it finished.

Every caller that looks into a run (the CLI's overwrite check, a resumed run, the study runner, the demo)
goes through these names, so a run's layout is written down once::

    config.yaml      the config that ran (written once every check before step 1 has passed)
    last.pt          the latest training checkpoint (resumable), best.pt the best on validation
    metrics.jsonl    train / val records, one per line; loss_curves.png drawn from it
    summary.json     the RunSummary, written once when the run has trained and been tested: the done marker
    run.log          the run's printed lines when it ran in a worker (the study runner)
    scores.json      a study's scores of the finished run (val, test), so a resumed study does not rescore
    plan.txt         a distillation's dry-run report, when asked for
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True, init=False)
class RunFolder:
    """The files of the run in ``path`` (nothing is created until a run writes it)."""

    path: Path

    # What a run writes at the top of its folder; a fresh start with ``overwrite`` removes them first.
    OUTPUTS = ("last.pt", "best.pt", "metrics.jsonl", "summary.json", "loss_curves.png", "config.yaml",
               "scores.json", "plan.txt")

    def __init__(self, path: str | Path) -> None:
        object.__setattr__(self, "path", Path(path))

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    @property
    def best(self) -> Path:
        return self.path / "best.pt"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def loss_curves(self) -> Path:
        return self.path / "loss_curves.png"

    @property
    def log(self) -> Path:
        return self.path / "run.log"

    @property
    def scores(self) -> Path:
        return self.path / "scores.json"

    @property
    def plan(self) -> Path:
        return self.path / "plan.txt"

    def holds_files(self) -> bool:
        return self.path.is_dir() and any(self.path.iterdir())

    def read_summary(self) -> dict[str, Any] | None:
        """``summary.json`` as a dict, or None when it is absent or torn (a run killed while writing it)."""
        try:
            data = json.loads(self.summary.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def is_done(self, steps: int | None = None) -> bool:
        """The run finished (trained and tested: ``summary.json`` is written once, at the very end), and
        reached ``steps`` when given (a run stopped early by a smaller ``max_steps`` is not done)."""
        summary = self.read_summary()
        if summary is None:
            return False
        return steps is None or int(summary.get("steps", 0)) >= steps

    def clear_outputs(self) -> None:
        """Remove the previous run's outputs, so that none of them sits beside a fresh run's as if it were its."""
        for name in self.OUTPUTS:
            (self.path / name).unlink(missing_ok=True)

    def file_log(self) -> Callable[[str], None]:
        """A ``log`` that appends each line to :attr:`log` (a worker process's run has no console)."""
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.log

        def log(line: str) -> None:
            with open(target, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")

        return log
