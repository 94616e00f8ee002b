"""The fault matrix's one platform (package scope: every case shares it) and the table it prints.

Each case appends one row to ROWS; `pytest_terminal_summary` prints them as a table at the end of the
session, whatever the verbosity, so a CI log and a person at the terminal see the same figures.
"""
from __future__ import annotations

import pytest

from fleet import spec as fleet_spec
from fleet.local import FLEET_NAME
from fleet.probe import Platform

ROWS: list[dict] = []
COLUMNS = (("case", "case", 49), ("requests", "requests", 8), ("failed", "failed", 6),
           ("to_normal", "s to normal", 11), ("run_needed", "needs a run", 11), ("converges", "next run converges", 18),
           ("left", "left behind", 11))


@pytest.fixture(scope="package")
def platform() -> Platform:
    platform = Platform()
    if fleet_spec.load_saved(FLEET_NAME) is not None:
        pytest.fail(f"fleet {FLEET_NAME!r} is already up on this machine: run `make down` first")
    try:
        up = platform.local("up")
        assert up.stdout.strip().splitlines()[-1] == f"endpoint: http://{platform.fleet.eip_address}/"
        yield platform
    finally:
        platform.local("down", check=False)


def format_table(rows: list[dict]) -> list[str]:
    def cell(row: dict, key: str) -> str:
        value = row.get(key, "")
        if isinstance(value, bool):      # a case that did not converge stands out
            return "yes" if value else ("NO" if key == "converges" else "no")
        if isinstance(value, float):
            return f"{value:.1f}"
        return str(value)

    lines = [" | ".join(title.ljust(width) for _key, title, width in COLUMNS)]
    lines.append("-|-".join("-" * width for _key, _title, width in COLUMNS))
    for row in rows:
        lines.append(" | ".join(cell(row, key).ljust(width) for key, _title, width in COLUMNS))
    return lines


def pytest_terminal_summary(terminalreporter) -> None:
    if not ROWS:
        return
    terminalreporter.section("fault matrix (client: 20 requests/s through the EIP, shop.ecom.test/health)")
    for line in format_table(ROWS):
        terminalreporter.write_line(line)
