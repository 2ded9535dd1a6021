"""The product catalog as the order rules see it: prices, availability and recipes.

Built from plain rows (tuples, or mappings with the same names) so a Flink operator can
load it straight from PostgreSQL and the tests and the traffic generator can build it
from ``pizzastream.reference_data``. Money is integer cents inside the pipeline: sums of
cents are exact, and the only conversions happen at the edges (``to_cents``,
``from_cents``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Any

PRODUCT_COLUMNS = ("product_id", "name", "unit_price_cents", "active")
RECIPE_COLUMNS = ("product_id", "ingredient_id", "quantity")

Row = Sequence[Any] | Mapping[str, Any]


@dataclass(frozen=True)
class CatalogProduct:
    product_id: int
    name: str
    unit_price_cents: int
    active: bool


def to_cents(amount: Decimal | int | str) -> int:
    """Exact cents of a money amount; refuses fractions of a cent rather than rounding
    them away silently."""
    cents = Decimal(amount) * 100
    if cents != cents.to_integral_value():
        raise ValueError(f"{amount!r} is not a whole number of cents")
    return int(cents)


def from_cents(cents: int) -> Decimal:
    """Cents as the ``numeric(_, 2)`` amount the outputs carry (e.g. ``1250 -> 12.50``)."""
    return Decimal(cents).scaleb(-2)


def _columns(row: Row, names: tuple[str, ...]) -> tuple[Any, ...]:
    if isinstance(row, Mapping):
        return tuple(row[name] for name in names)
    if len(row) != len(names):
        raise ValueError(f"expected columns {names}, got {row!r}")
    return tuple(row)


class Catalog:
    """Immutable lookup of products and recipes; a reload builds a new ``Catalog``."""

    def __init__(
        self, products: Iterable[CatalogProduct], recipes: Mapping[int, Mapping[int, int]]
    ):
        self._products = {p.product_id: p for p in products}
        self._recipes = {pid: MappingProxyType(dict(lines)) for pid, lines in recipes.items()}
        # The order path's per-event lookups, precomputed once per catalog load: the unit
        # price of each product on sale, and each recipe as (ingredient, units) pairs.
        self.sale_prices: Mapping[int, int] = MappingProxyType(
            {p.product_id: p.unit_price_cents for p in self._products.values() if p.active}
        )
        self.recipe_pairs: Mapping[int, tuple[tuple[int, int], ...]] = MappingProxyType(
            {pid: tuple(lines.items()) for pid, lines in self._recipes.items()}
        )
        # Each recipe as a plain dict, for ``inventory.order_demand`` to copy (``dict(...)``
        # of a dict is a C-level copy) as the demand of one unit of the product.
        self.recipe_units: Mapping[int, dict[int, int]] = MappingProxyType(
            {pid: dict(lines) for pid, lines in self._recipes.items()}
        )

    @classmethod
    def from_rows(cls, product_rows: Iterable[Row], recipe_rows: Iterable[Row]) -> Catalog:
        """From ``(product_id, name, unit_price_cents, active)`` and
        ``(product_id, ingredient_id, quantity)`` rows. Bad rows raise: a job must not
        start, or swap in, a catalog that would misprice orders."""
        products = []
        for row in product_rows:
            product_id, name, cents, active = _columns(row, PRODUCT_COLUMNS)
            if int(cents) != cents or cents <= 0:
                raise ValueError(f"product {product_id}: unit price must be positive cents")
            products.append(CatalogProduct(int(product_id), str(name), int(cents), bool(active)))
        recipes: dict[int, dict[int, int]] = {}
        for row in recipe_rows:
            product_id, ingredient_id, quantity = _columns(row, RECIPE_COLUMNS)
            recipes.setdefault(int(product_id), {})[int(ingredient_id)] = int(quantity)
        return cls(products, recipes)

    @classmethod
    def from_reference_data(cls) -> Catalog:
        """The seeded catalog, for tests and the traffic generator."""
        from pizzastream import reference_data

        return cls.from_rows(
            (
                (p.product_id, p.name, to_cents(p.unit_price), p.active)
                for p in reference_data.products()
            ),
            ((r.product_id, r.ingredient_id, r.quantity) for r in reference_data.recipes()),
        )

    def product(self, product_id: int) -> CatalogProduct | None:
        return self._products.get(product_id)

    def products(self) -> tuple[CatalogProduct, ...]:
        """All products, active or not, by ascending id (a stable order for generators)."""
        return tuple(self._products[pid] for pid in sorted(self._products))

    def recipe(self, product_id: int) -> Mapping[int, int]:
        """Ingredient id -> quantity used by one unit of the product (empty if none)."""
        return self._recipes.get(product_id, MappingProxyType({}))

    def ingredient_demand(self, lines: Iterable[tuple[int, int]]) -> dict[int, int]:
        """Total ingredient quantities consumed by ``(product_id, quantity)`` lines: what an
        order takes out of a store's inventory."""
        demand: dict[int, int] = {}
        for product_id, quantity in lines:
            for ingredient_id, per_unit in self.recipe(product_id).items():
                demand[ingredient_id] = demand.get(ingredient_id, 0) + per_unit * quantity
        return demand
