"""docs/architecture.md's table of modules against the layout: every top-level package has
its row, no row names a package that is gone, and the rows of the product's packages name
each of their modules, so a module added, moved or removed shows here until the page says
what it owns."""

from __future__ import annotations

import re

from pizzastream.config import REPO_ROOT

PAGE = REPO_ROOT / "docs" / "architecture.md"
# The packages whose every module the page names; the tools' packages (bench, deploy,
# stack, tests) are described as wholes.
PRODUCT = ("pizzastream", "simulation", "connectors", "jobs", "etl", "delivery", "api", "pos")


def module_rows(text: str) -> dict[str, str]:
    """``{package: its row}`` of the table under "Modules and what each owns"."""
    table = text.split("## Modules and what each owns", 1)[1]
    rows = {}
    for line in table.splitlines():
        match = re.match(r"\| `([a-z_]+)/` \| (.*)", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def unnamed_modules(package: str, row: str) -> list[str]:
    named = set(re.findall(r"`([A-Za-z0-9_.]+)`", row))
    modules = sorted(
        path.stem
        for path in (REPO_ROOT / package).glob("*.py")
        if path.stem not in ("__init__", "__main__")
    )
    return [m for m in modules if m not in named and f"{package}.{m}" not in named]


def test_every_package_has_its_row_and_every_row_a_package():
    packages = {path.parent.name for path in REPO_ROOT.glob("*/__init__.py")}
    rows = module_rows(PAGE.read_text())
    assert packages - set(rows) == set(), "packages the page does not describe"
    assert set(rows) - packages == set(), "rows of packages that are gone"


def test_the_products_rows_name_each_of_their_modules():
    rows = module_rows(PAGE.read_text())
    unnamed = {package: unnamed_modules(package, rows[package]) for package in PRODUCT}
    assert {package: names for package, names in unnamed.items() if names} == {}


def test_the_check_sees_a_module_the_row_leaves_out():
    row = "the jobs (`order_enrichment`, `inventory_windowing`), `runtime`, `operators`, `testing`"
    assert unnamed_modules("jobs", row) == ["hourly_metrics"]
