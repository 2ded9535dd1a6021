"""Invariants of the reference data the stack seeds and the generator and jobs rely on."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import fields
from decimal import Decimal
from statistics import mean

import pytest

from pizzastream import reference_data as rd
from pizzastream.config import REPO_ROOT

TABLE_ROWS = {
    "store": rd.Store,
    "product": rd.Product,
    "supplier": rd.Supplier,
    "ingredient": rd.Ingredient,
    "recipe": rd.RecipeLine,
    "delivery_partner": rd.DeliveryPartner,
}


def _sql_columns() -> dict[str, dict[str, bool]]:
    """``{table: {column: has_default}}`` parsed from the operational schema."""
    text = (REPO_ROOT / "stack" / "sql" / "operational.sql").read_text()
    tables = {}
    for table, body in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", text, re.S):
        lines = (line.split("--")[0].strip() for line in body.splitlines())
        tables[table] = {
            line.split()[0]: "DEFAULT" in line
            for line in lines
            if line and not line.startswith("PRIMARY KEY")
        }
    return tables


@pytest.mark.parametrize("table", [*TABLE_ROWS, "inventory"])
def test_fields_are_the_table_columns_without_defaults(table):
    columns = _sql_columns()[table]
    names = (
        list(rd.StockLevel._fields)
        if table == "inventory"
        else [f.name for f in fields(TABLE_ROWS[table])]
    )
    assert set(names) <= set(columns)
    assert all(columns[c] for c in set(columns) - set(names)), "uncovered column needs a DEFAULT"


def test_two_thousand_stores_with_ids_1_to_2000():
    stores = rd.stores()
    assert [s.store_id for s in stores] == list(range(1, 2001))
    assert len({s.name for s in stores}) == 2000


def test_busy_fifth_of_stores_carries_80_percent_of_traffic():
    stores = rd.stores()
    busy = [s for s in stores if s.busy]
    assert len(busy) == 400
    assert sum(s.traffic_weight for s in busy) == pytest.approx(0.8)
    assert sum(s.traffic_weight for s in stores) == pytest.approx(1.0)
    assert min(s.traffic_weight for s in busy) > max(s.traffic_weight for s in stores if not s.busy)


def test_stores_are_in_the_metro_areas_in_the_us():
    stores = rd.stores()
    assert all(24 < s.lat < 50 and -125 < s.lon < -66 for s in stores)
    per_metro = Counter(s.name.rsplit(" #", 1)[0] for s in stores)
    assert per_metro == {m.name: m.store_count for m in rd.METROS}


def test_catalog_has_prices_in_cents_and_a_retired_product():
    products = rd.products()
    assert 15 <= len(products) <= 25
    assert len({p.product_id for p in products}) == len(products)
    assert all(
        p.unit_price > 0 and p.unit_price == p.unit_price.quantize(Decimal("0.01"))
        for p in products
    )
    assert 1 <= sum(not p.active for p in products) <= 2


def test_recipes_reference_existing_ids_and_cover_every_product():
    product_ids = {p.product_id for p in rd.products()}
    ingredient_ids = {i.ingredient_id for i in rd.ingredients()}
    recipes = rd.recipes()
    assert {r.product_id for r in recipes} == product_ids
    assert {r.ingredient_id for r in recipes} <= ingredient_ids
    assert all(isinstance(r.quantity, int) and r.quantity > 0 for r in recipes)
    assert len({(r.product_id, r.ingredient_id) for r in recipes}) == len(recipes)


def test_ingredients_come_from_known_suppliers_in_whole_units():
    supplier_ids = {s.supplier_id for s in rd.suppliers()}
    for ingredient in rd.ingredients():
        assert ingredient.supplier_id in supplier_ids
        assert ingredient.unit in {"g", "pcs"}
        assert 0 <= ingredient.safety_stock < ingredient.reorder_quantity


def _days_of_cover() -> dict[tuple[bool, int], list[float]]:
    """Days each store's opening stock lasts under the module's documented demand model."""
    active = {p.product_id for p in rd.products() if p.active}
    use_per_item: defaultdict[int, float] = defaultdict(float)
    for line in rd.recipes():
        if line.product_id in active:
            use_per_item[line.ingredient_id] += line.quantity / len(active)
    stores = {s.store_id: s for s in rd.stores()}
    cover = defaultdict(list)
    for store_id, ingredient_id, on_hand in rd.initial_inventory():
        store = stores[store_id]
        daily = (
            store.traffic_weight
            * rd.ASSUMED_CHAIN_ORDERS_PER_DAY
            * rd.ASSUMED_ITEMS_PER_ORDER
            * use_per_item[ingredient_id]
        )
        cover[store.busy, ingredient_id].append(on_hand / daily)
    return cover


def test_opening_stock_covers_every_store_and_pair():
    inventory = rd.initial_inventory()
    assert len(inventory) == 2000 * len(rd.ingredients())
    assert len({(s, i) for s, i, _ in inventory}) == len(inventory)
    reorder_point = {i.ingredient_id: i.safety_stock for i in rd.ingredients()}
    assert all(on_hand > reorder_point[i] for _, i, on_hand in inventory)


def test_busy_stores_last_about_a_day_and_quiet_stores_longer():
    cover = _days_of_cover()
    for ingredient in rd.ingredients():
        busy, quiet = cover[True, ingredient.ingredient_id], cover[False, ingredient.ingredient_id]
        assert min(busy) >= 1.0 and mean(busy) < 1.5
        assert min(quiet) > max(busy)


def test_delivery_partners_serve_every_metro():
    partners = rd.delivery_partners()
    assert len({p.partner_id for p in partners}) == len(partners)
    assert Counter(p.name.split(" ", 1)[1] for p in partners) == {m.name: 3 for m in rd.METROS}
    for p in partners:
        assert p.base_fee > 0 and p.fee_per_km > 0 and p.capacity > 0 and p.speed_kmh > 0
        assert 0 <= p.refusal_rate <= 1


def test_deterministic_for_a_seed_and_seed_dependent():
    assert rd.stores() == rd.stores()
    assert rd.initial_inventory() == rd.initial_inventory()
    assert rd.delivery_partners() == rd.delivery_partners()
    assert rd.stores(seed=1) == rd.stores(seed=1)
    assert rd.stores(seed=1) != rd.stores(seed=2)
