"""The suite's summary table: one row per scenario, printed at the end of the run and,
with ``PIZZASTREAM_FAILURES_DOC=1``, written into docs/failures.md between its markers."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from pizzastream.config import REPO_ROOT
from tests.failures.harness import Verdict

DOC = REPO_ROOT / "docs" / "failures.md"
BEGIN, END = "<!-- failures-table:begin -->", "<!-- failures-table:end -->"
UPDATE_DOC_ENV = "PIZZASTREAM_FAILURES_DOC"
COMMAND = "PIZZASTREAM_FAILURES_DOC=1 .venv/bin/python -m pytest tests/failures -q"

RESULTS: list[Verdict] = []
NOTES: list[str] = []

COLUMNS = (
    "scenario",
    "p",
    "failures injected",
    "job restarts",
    "valid orders",
    "accepted",
    "sales lost",
    "sales duplicated",
    "status copies",
    "sale copies",
    "stock cells off",
    "bad inputs tried",
    "bad inputs dead-lettered",
    "seconds",
    "verdict",
)


def _row(v: Verdict) -> list[str]:
    return [
        v.scenario,
        v.parallelism,
        "; ".join(v.faults) or "none",
        str(v.restarts),
        str(v.orders),
        str(v.accepted),
        str(v.lost),
        str(v.duplicated),
        str(v.status_copies),
        str(v.stream_copies),
        str(v.inventory_cells_off),
        str(v.bad_tried),
        str(v.bad_dead_lettered),
        f"{v.seconds:.0f}",
        "pass" if not v.problems else f"FAIL ({len(v.problems)})",
    ]


def rows() -> list[list[str]]:
    table = [_row(v) for v in RESULTS]
    if RESULTS:
        total = Verdict(
            "**total**", [f"{sum(v.failures for v in RESULTS)} failures"], parallelism=""
        )
        for name in (
            "restarts",
            "orders",
            "accepted",
            "lost",
            "duplicated",
            "status_copies",
            "stream_copies",
            "inventory_cells_off",
            "bad_tried",
            "bad_dead_lettered",
            "seconds",
        ):
            setattr(total, name, sum(getattr(v, name) for v in RESULTS))
        total.problems = [p for v in RESULTS for p in v.problems]
        table.append(_row(total))
    return table


def markdown() -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows()]
    return "\n".join(lines)


def text() -> str:
    table = [list(COLUMNS)] + rows()
    widths = [min(max(len(row[i]) for row in table), 48) for i in range(len(COLUMNS))]
    out = []
    for index, row in enumerate(table):
        out.append("  ".join(cell[:48].ljust(width) for cell, width in zip(row, widths)).rstrip())
        if index == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)


def write_doc(path: Path = DOC) -> bool:
    """Replaces the table between the markers of docs/failures.md; False if absent."""
    if not path.exists():
        return False
    document = path.read_text()
    if BEGIN not in document or END not in document:
        return False
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = (
        f"{BEGIN}\nProduced by `{COMMAND}` on {stamp} "
        f"(Python {sys.version.split()[0]}):\n\n{markdown()}\n"
    )
    if NOTES:
        block += "\n" + "\n".join(f"- {note}" for note in NOTES) + "\n"
    head, rest = document.split(BEGIN, 1)
    path.write_text(head + block + END + rest.split(END, 1)[1])
    return True


def report(terminal) -> None:
    """Called from ``pytest_terminal_summary``."""
    if not RESULTS:
        return
    terminal.section("failures and bad input: summary")
    terminal.write_line(text())
    for verdict in RESULTS:
        for problem in verdict.problems:
            terminal.write_line(f"  {verdict.scenario}: {problem[:400]}")
    for note in NOTES:
        terminal.write_line(f"  note: {note}")
    if os.environ.get(UPDATE_DOC_ENV) == "1":
        written = write_doc()
        terminal.write_line(f"  {'wrote' if written else 'could not write'} the table into {DOC}")
