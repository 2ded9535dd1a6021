"""The chain's reference data: stores, catalog, recipes, suppliers, stock and couriers.

Pure and deterministic on purpose: the local stack seeds PostgreSQL from these lists,
while the order generator and the tests import the same lists to know which ids exist
and how traffic is spread, so every party agrees on the data without reading a database.
Field names equal the column names of ``stack/sql/operational.sql``, which lets the
seeder COPY a dataclass straight into its table.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple

DEFAULT_SEED = 20261124

STORE_COUNT = 2000
BUSY_STORE_COUNT = 400  # the 20% of stores ...
BUSY_TRAFFIC_SHARE = 0.8  # ... that carry 80% of the orders

# Demand assumptions used only to size the opening stock (see ``initial_inventory``).
ASSUMED_CHAIN_ORDERS_PER_DAY = 300_000  # ~150 orders per store per day on average
ASSUMED_ITEMS_PER_ORDER = 2  # units per order, drawn uniformly from active products

_KM_PER_DEGREE_LAT = 111.32


@dataclass(frozen=True)
class Metro:
    """A metro area the chain operates in; stores and couriers sit within its radius."""

    name: str
    lat: float
    lon: float
    radius_km: float
    store_count: int


METROS: tuple[Metro, ...] = (
    Metro("New York", 40.7128, -74.0060, 30.0, 440),
    Metro("Los Angeles", 34.0522, -118.2437, 40.0, 360),
    Metro("Chicago", 41.8781, -87.6298, 30.0, 280),
    Metro("Houston", 29.7604, -95.3698, 35.0, 220),
    Metro("Dallas", 32.7767, -96.7970, 35.0, 200),
    Metro("Philadelphia", 39.9526, -75.1652, 25.0, 180),
    Metro("Phoenix", 33.4484, -112.0740, 30.0, 160),
    Metro("Atlanta", 33.7490, -84.3880, 30.0, 160),
)


@dataclass(frozen=True)
class Store:
    store_id: int
    name: str
    lat: float
    lon: float
    traffic_weight: float  # share of the chain's orders; all stores sum to 1.0
    busy: bool


@dataclass(frozen=True)
class Product:
    product_id: int
    name: str
    unit_price: Decimal
    active: bool  # retired products stay in the catalog so old ids are recognisable


@dataclass(frozen=True)
class Supplier:
    supplier_id: int
    name: str
    lead_time_minutes: int
    # How far an order to this supplier covers beyond its lead time: about one delivery
    # per review period at a busy store (pizzastream.replenishment).
    review_period_minutes: int = 1440
    # How late past its lead time a delivery may be before the order is re-issued.
    grace_minutes: int = 120


@dataclass(frozen=True)
class Ingredient:
    ingredient_id: int
    name: str
    unit: str  # "g" or "pcs": whole units keep stock arithmetic exact
    supplier_id: int
    safety_stock: int  # reorder when on-hand falls below this (the floor of any safety stock)
    reorder_quantity: int  # units per supplier order (the least one order line carries)
    # Share of replenishment cycles that should end without a stock-out: sets the safety
    # stock from the demand forecast's error (pizzastream.replenishment).
    service_level: float = 0.99


@dataclass(frozen=True)
class RecipeLine:
    product_id: int
    ingredient_id: int
    quantity: int  # units of the ingredient per unit of the product


@dataclass(frozen=True)
class DeliveryPartner:
    partner_id: int
    name: str
    lat: float
    lon: float
    base_fee: Decimal
    fee_per_km: Decimal
    capacity: int  # deliveries a partner carries at once
    refusal_rate: float  # probability a partner declines an offered delivery
    speed_kmh: float


class StockLevel(NamedTuple):
    store_id: int
    ingredient_id: int
    on_hand: int


_SUPPLIERS = (
    Supplier(1, "Northstar Foodservice", 240, 1440, 120),
    Supplier(2, "Prime Cuts Meats", 360, 1440, 120),
    Supplier(3, "Green Valley Produce", 180, 1440, 120),
    Supplier(4, "BoxCo Packaging", 1440, 4320, 480),
    Supplier(5, "Fizz Beverages", 720, 4320, 240),
)

(
    _DOUGH,
    _SAUCE,
    _MOZZARELLA,
    _PEPPERONI,
    _MUSHROOMS,
    _HAM,
    _PINEAPPLE,
    _BASIL,
    _WINGS,
    _PIZZA_BOX,
    _SIDE_BOX,
    _CAN,
) = range(1, 13)

_INGREDIENTS = (
    Ingredient(_DOUGH, "Dough", "g", 1, 10_000, 50_000),
    Ingredient(_SAUCE, "Tomato sauce", "g", 1, 4_000, 20_000),
    Ingredient(_MOZZARELLA, "Mozzarella", "g", 1, 5_000, 25_000),
    Ingredient(_PEPPERONI, "Pepperoni", "g", 2, 1_500, 7_500),
    Ingredient(_MUSHROOMS, "Mushrooms", "g", 3, 1_000, 5_000),
    Ingredient(_HAM, "Ham", "g", 2, 1_000, 5_000),
    Ingredient(_PINEAPPLE, "Pineapple", "g", 3, 500, 2_500),
    Ingredient(_BASIL, "Basil", "g", 3, 50, 250),
    Ingredient(_WINGS, "Chicken wings", "pcs", 2, 50, 200),
    Ingredient(_PIZZA_BOX, "Pizza box", "pcs", 4, 50, 250),
    Ingredient(_SIDE_BOX, "Side box", "pcs", 4, 20, 100),
    Ingredient(_CAN, "Soda can 330 ml", "pcs", 5, 24, 96),
)

# Grams per pizza by size; a topping uses the "topping" amount, basil its own.
_PIZZA_GRAMS = {
    "Small": {_DOUGH: 180, _SAUCE: 60, _MOZZARELLA: 80, "topping": 40, _BASIL: 3},
    "Medium": {_DOUGH: 250, _SAUCE: 90, _MOZZARELLA: 120, "topping": 60, _BASIL: 4},
    "Large": {_DOUGH: 350, _SAUCE: 120, _MOZZARELLA: 170, "topping": 80, _BASIL: 5},
}


def _pizza(size: str, *toppings: int) -> dict[int, int]:
    """Recipe of one pizza: base, cheese, sauce, a box, and each topping at the size's amount."""
    grams = _PIZZA_GRAMS[size]
    recipe = {
        _DOUGH: grams[_DOUGH],
        _SAUCE: grams[_SAUCE],
        _MOZZARELLA: grams[_MOZZARELLA],
        _PIZZA_BOX: 1,
    }
    for topping in toppings:
        recipe[topping] = grams[_BASIL] if topping == _BASIL else grams["topping"]
    return recipe


class _CatalogItem(NamedTuple):
    product_id: int
    name: str
    unit_price: str
    active: bool
    recipe: dict[int, int]


_CATALOG = (
    _CatalogItem(1, "Margherita Small", "8.99", True, _pizza("Small", _BASIL)),
    _CatalogItem(2, "Margherita Medium", "11.99", True, _pizza("Medium", _BASIL)),
    _CatalogItem(3, "Margherita Large", "14.99", True, _pizza("Large", _BASIL)),
    _CatalogItem(4, "Pepperoni Small", "9.99", True, _pizza("Small", _PEPPERONI)),
    _CatalogItem(5, "Pepperoni Medium", "12.99", True, _pizza("Medium", _PEPPERONI)),
    _CatalogItem(6, "Pepperoni Large", "15.99", True, _pizza("Large", _PEPPERONI)),
    _CatalogItem(7, "Funghi Medium", "12.49", True, _pizza("Medium", _MUSHROOMS)),
    _CatalogItem(8, "Funghi Large", "15.49", True, _pizza("Large", _MUSHROOMS)),
    _CatalogItem(9, "Hawaiian Medium", "13.49", True, _pizza("Medium", _HAM, _PINEAPPLE)),
    _CatalogItem(10, "Hawaiian Large", "16.49", True, _pizza("Large", _HAM, _PINEAPPLE)),
    _CatalogItem(11, "Meat Feast Large", "17.99", True, _pizza("Large", _PEPPERONI, _HAM)),
    _CatalogItem(12, "Prosciutto e Funghi Large", "16.99", True, _pizza("Large", _HAM, _MUSHROOMS)),
    _CatalogItem(13, "Garlic Bread", "4.99", True, {_DOUGH: 150, _SIDE_BOX: 1}),
    _CatalogItem(
        14, "Cheesy Garlic Bread", "5.99", True, {_DOUGH: 150, _MOZZARELLA: 60, _SIDE_BOX: 1}
    ),
    _CatalogItem(15, "Chicken Wings (8 pc)", "8.49", True, {_WINGS: 8, _SIDE_BOX: 1}),
    _CatalogItem(16, "Cola 330 ml", "1.99", True, {_CAN: 1}),
    _CatalogItem(17, "Diet Cola 330 ml", "1.99", True, {_CAN: 1}),
    _CatalogItem(18, "Lemon Soda 330 ml", "1.99", True, {_CAN: 1}),
    # Retired: still known ids, so orders for them are rejected rather than "unknown".
    _CatalogItem(19, "Hawaiian Small", "10.49", False, _pizza("Small", _HAM, _PINEAPPLE)),
    _CatalogItem(20, "Four Cheese Large", "16.99", False, {**_pizza("Large"), _MOZZARELLA: 300}),
)

_COURIER_BRANDS = ("Dash", "Zoom", "Pronto")


def _rng(seed: int, purpose: str) -> random.Random:
    """One generator per list, so changing how one list is drawn never reshuffles another."""
    return random.Random(f"{seed}:{purpose}")


def _point_near(rng: random.Random, metro: Metro, radius_km: float) -> tuple[float, float]:
    """A point uniformly distributed over a disk around the metro centre."""
    distance = radius_km * math.sqrt(rng.random())
    bearing = rng.uniform(0.0, 2.0 * math.pi)
    dlat = distance * math.cos(bearing) / _KM_PER_DEGREE_LAT
    dlon = distance * math.sin(bearing) / (_KM_PER_DEGREE_LAT * math.cos(math.radians(metro.lat)))
    return round(metro.lat + dlat, 6), round(metro.lon + dlon, 6)


def _normalised(raw: dict[int, float], total: float) -> dict[int, float]:
    scale = total / sum(raw.values())
    return {key: value * scale for key, value in raw.items()}


def _traffic_weights(rng: random.Random) -> tuple[dict[int, float], set[int]]:
    """Weights per store id: 400 busy stores share 0.8, the other 1,600 share 0.2."""
    ids = range(1, STORE_COUNT + 1)
    busy = set(rng.sample(ids, BUSY_STORE_COUNT))
    raw = {store_id: rng.uniform(0.5, 1.5) for store_id in ids}
    weights = _normalised({i: raw[i] for i in sorted(busy)}, BUSY_TRAFFIC_SHARE)
    weights |= _normalised({i: raw[i] for i in ids if i not in busy}, 1.0 - BUSY_TRAFFIC_SHARE)
    return weights, busy


def stores(seed: int = DEFAULT_SEED) -> list[Store]:
    """The 2,000 stores, ids 1..2000 numbered metro by metro (see ``METROS``)."""
    rng = _rng(seed, "stores")
    weights, busy = _traffic_weights(rng)
    result: list[Store] = []
    for metro in METROS:
        for number in range(1, metro.store_count + 1):
            store_id = len(result) + 1
            lat, lon = _point_near(rng, metro, metro.radius_km)
            result.append(
                Store(
                    store_id,
                    f"{metro.name} #{number:03d}",
                    lat,
                    lon,
                    weights[store_id],
                    store_id in busy,
                )
            )
    return result


def products() -> list[Product]:
    return [
        Product(item.product_id, item.name, Decimal(item.unit_price), item.active)
        for item in _CATALOG
    ]


def suppliers() -> list[Supplier]:
    return list(_SUPPLIERS)


def ingredients() -> list[Ingredient]:
    return list(_INGREDIENTS)


def recipes() -> list[RecipeLine]:
    return [
        RecipeLine(item.product_id, ingredient_id, quantity)
        for item in _CATALOG
        for ingredient_id, quantity in item.recipe.items()
    ]


def _use_per_order() -> dict[int, float]:
    """Expected units of each ingredient one order consumes under the demand assumptions."""
    active = [item for item in _CATALOG if item.active]
    per_item = {ingredient.ingredient_id: 0.0 for ingredient in _INGREDIENTS}
    for item in active:
        for ingredient_id, quantity in item.recipe.items():
            per_item[ingredient_id] += quantity / len(active)
    return {key: value * ASSUMED_ITEMS_PER_ORDER for key, value in per_item.items()}


def initial_inventory(seed: int = DEFAULT_SEED) -> list[StockLevel]:
    """Opening stock of every ingredient at every store.

    Assumption: the chain takes ``ASSUMED_CHAIN_ORDERS_PER_DAY`` orders a day, split by
    ``traffic_weight``, each of ``ASSUMED_ITEMS_PER_ORDER`` units drawn uniformly from the
    active products. A store opens with one business day of its own expected use, but
    never less than ``safety_stock + reorder_quantity`` (so no store opens already below
    its reorder point). A busy store (~600 orders/day) therefore runs out in about a day
    and exercises replenishment, while a quiet store (~40 orders/day) sits on that floor
    and lasts two and a half days or more.
    """
    use_per_order = _use_per_order()
    result = []
    for store in stores(seed):
        orders_per_day = store.traffic_weight * ASSUMED_CHAIN_ORDERS_PER_DAY
        for ingredient in _INGREDIENTS:
            daily_use = math.ceil(orders_per_day * use_per_order[ingredient.ingredient_id])
            floor = ingredient.safety_stock + ingredient.reorder_quantity
            result.append(
                StockLevel(store.store_id, ingredient.ingredient_id, max(daily_use, floor))
            )
    return result


def delivery_partners(seed: int = DEFAULT_SEED) -> list[DeliveryPartner]:
    """Three courier companies per metro area, based within half its radius."""
    rng = _rng(seed, "delivery_partners")
    result: list[DeliveryPartner] = []
    for metro in METROS:
        for brand in _COURIER_BRANDS:
            lat, lon = _point_near(rng, metro, metro.radius_km / 2)
            result.append(
                DeliveryPartner(
                    partner_id=len(result) + 1,
                    name=f"{brand} {metro.name}",
                    lat=lat,
                    lon=lon,
                    base_fee=Decimal(rng.randrange(199, 400)) / 100,
                    fee_per_km=Decimal(rng.randrange(40, 121)) / 100,
                    capacity=rng.randint(4, 12),
                    refusal_rate=round(rng.uniform(0.02, 0.2), 3),
                    speed_kmh=round(rng.uniform(18.0, 32.0), 1),
                )
            )
    return result
