"""The HTTP service: order intake and status, merchant insights, the dashboard.

Litestar on granian (chosen by measurement: README, "Read side"). ``create_app(props)``
builds it; ``api.app:app`` is what the server imports. Every error is JSON
``{"error": {"status", "code", "message"}}``; bad input is a 4xx, never a 500. OpenAPI at
``/schema/openapi.json`` (Swagger UI at ``/schema/swagger``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import redis.asyncio as aioredis
from litestar import Litestar, MediaType, Request, Response, get, post
from litestar.exceptions import HTTPException
from litestar.openapi import OpenAPIConfig
from litestar.params import Parameter
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from api import auth
from api.figures import BadRange, hour_range, rank, series, totals
from api.insights import Insights, Stock
from api.intake import Intake, OrderRefused, StreamRefused
from connectors import aurora, aws, redis_store
from pizzastream.catalog import Catalog
from pizzastream.config import Props, load_properties, postgres_dsn, stream_name
from pizzastream.orders import STORE_IDS
from pizzastream.settings import (
    ApiSettings,
    HourlyMetricsSettings,
    OrderRulesSettings,
    validate,
)

log = logging.getLogger(__name__)
DASHBOARD = (Path(__file__).parent / "static" / "dashboard.html").read_text()
# A ranking adds up stores x hours figures in this process: bounded per request.
MAX_RANKING_STORE_HOURS = 200_000
KINESIS_TIMEOUT_S = 5


class RateLimited(Exception):
    def __init__(self, retry_after_s: float):
        super().__init__(f"rate limit exceeded: retry in {retry_after_s:.2f} s")
        self.retry_after_s = retry_after_s


@dataclass
class Settings:
    """The ``Api`` property group."""

    token_secret: str
    merchant_rate_per_s: float
    merchant_burst: float
    intake_rate_per_s: float
    intake_burst: float
    max_wait_s: float
    publication_poll_s: float
    live_cache_ms: float
    cache_max_entries: int
    warehouse_pool_size: int
    catalog_refresh_s: float

    @classmethod
    def from_properties(cls, props: Props) -> Settings:
        group = ApiSettings.from_group(props["Api"])
        return cls(
            group.token_secret,
            group.merchant_rate_per_s,
            group.merchant_burst,
            group.intake_rate_per_s,
            group.intake_burst,
            group.max_wait_s,
            group.publication_poll_s,
            group.live_cache_ms,
            group.cache_max_entries,
            group.warehouse_pool_size,
            OrderRulesSettings.from_group(props["OrderRules"]).catalog_refresh_seconds,
        )


class ResponseCache:
    """Encoded metric responses by (store, from, to, granularity), each with the
    ``Insights.version`` it was built at and an optional time to live. Cleared whole when
    full: entries are cheap to rebuild from the per-hour cache."""

    def __init__(self, max_entries: int):
        self._entries: dict[tuple, tuple[int, float, bytes]] = {}
        self._max_entries = max_entries
        self.hits = self.misses = 0

    def get(self, key: tuple, version: int) -> bytes | None:
        entry = self._entries.get(key)
        if entry is not None and entry[0] == version and entry[1] > time.monotonic():
            self.hits += 1
            return entry[2]
        self.misses += 1
        return None

    def put(self, key: tuple, version: int, body: bytes, ttl_s: float | None) -> None:
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
        expires = time.monotonic() + ttl_s if ttl_s is not None else float("inf")
        self._entries[key] = (version, expires, body)


@dataclass
class Services:
    """Everything a request needs, built once per process at startup."""

    settings: Settings
    verifier: auth.Verifier
    limits: dict[str, auth.RateLimiter]
    insights: Insights
    stock: Stock
    intake: Intake
    responses: ResponseCache = field(default_factory=lambda: ResponseCache(100_000))
    tasks: list[asyncio.Task] = field(default_factory=list)
    closers: list = field(default_factory=list)

    def caller(self, request: Request, role: str, store_id: int | None = None) -> auth.Principal:
        principal = self.verifier.principal(request.headers.get("authorization"))
        principal.require_role(role)
        if store_id is not None:
            principal.require_store(store_id)
        wait = self.limits[principal.role].admit(principal.token_id)
        if wait:
            raise RateLimited(wait)
        return principal


async def _startup(app: Litestar) -> None:
    props: Props = app.state.props
    settings = Settings.from_properties(props)
    # Connected as every other Redis client is (AUTH, TLS, cluster mode: the ``Redis`` group).
    redis = redis_store.async_client(props, max_connections=64)
    warehouse = AsyncConnectionPool(
        postgres_dsn(props, "Warehouse"),
        min_size=1,
        max_size=settings.warehouse_pool_size,
        open=False,
        kwargs={"autocommit": True},
    )
    await warehouse.open(wait=True, timeout=30)
    live_window = timedelta(
        minutes=HourlyMetricsSettings.from_group(props["HourlyMetrics"]).live_ttl_minutes
    )
    insights = Insights(
        warehouse,
        redis,
        live_window=live_window,
        live_cache_s=settings.live_cache_ms / 1000,
        max_cached=settings.cache_max_entries,
    )
    await insights.refresh_publications()
    catalog = await asyncio.to_thread(_load_catalog, props)
    ingredients = await asyncio.to_thread(_load_ingredients, props)
    # A Kinesis that does not answer costs a customer at most 3 attempts of
    # KINESIS_TIMEOUT_S each (botocore's standard retries), then a 503.
    intake = Intake(
        aws.client(props, "kinesis", timeout_s=KINESIS_TIMEOUT_S),
        stream_name(props, "orders"),
        redis,
        OrderRulesSettings.from_group(props["OrderRules"]).rules,
        catalog,
    )
    services = Services(
        settings,
        auth.Verifier(settings.token_secret),
        {
            auth.MERCHANT: auth.RateLimiter(settings.merchant_rate_per_s, settings.merchant_burst),
            auth.INTAKE: auth.RateLimiter(settings.intake_rate_per_s, settings.intake_burst),
        },
        insights,
        Stock(redis, ingredients),
        intake,
    )
    services.tasks = [
        asyncio.create_task(insights.watch_publications(settings.publication_poll_s)),
        asyncio.create_task(_refresh_catalog(props, intake, settings.catalog_refresh_s)),
    ]
    services.closers = [warehouse.close, redis.aclose]
    app.state.services = services


async def _shutdown(app: Litestar) -> None:
    services: Services | None = getattr(app.state, "services", None)
    if services is None:
        return
    for task in services.tasks:
        task.cancel()
    for close in services.closers:
        await close()


def _load_catalog(props: Props) -> Catalog:
    return Catalog.from_rows(*aurora.catalog_rows(props))


def _load_ingredients(props: Props) -> dict[int, tuple[str, str, int]]:
    with aurora.connect(props) as conn:
        rows = conn.execute("SELECT ingredient_id, name, unit, safety_stock FROM ingredient")
        return {row[0]: tuple(row[1:]) for row in rows}


async def _refresh_catalog(props: Props, intake: Intake, period_s: float) -> None:
    """As the jobs do: reload every ``OrderRules.catalog_refresh_seconds``; a failed reload
    keeps the last good catalog."""
    while True:
        await asyncio.sleep(period_s)
        try:
            intake.catalog = await asyncio.to_thread(_load_catalog, props)
        except Exception:
            log.exception("catalog reload failed; keeping the previous catalog")


def _services(request: Request) -> Services:
    return request.app.state.services


# -- orders -------------------------------------------------------------------------------
@post("/orders", status_code=202, tags=["orders"], summary="Place an order")
async def place_order(request: Request) -> Response:
    """Body: the contract's order without ``event_id``, ``order_id`` and ``ts`` (the service
    sets them): ``{"store_id": 42, "channel": "online", "fulfillment": "delivery",
    "customer": {"lat": 40.71, "lon": -74.0}, "items": [{"product_id": 7, "quantity": 2}]}``.
    Validated by the order_enrichment rules; 202 with the order id once it is on the
    ``orders`` stream; 422 with the rule's reason when refused. Needs an intake token."""
    services = _services(request)
    services.caller(request, auth.INTAKE)
    placed = await services.intake.place(await request.body())
    order = placed.order
    return Response(
        {
            "order_id": order.order_id,
            "event_id": order.event_id,
            "store_id": order.store_id,
            "status": "pending",
            "total": f"{order.total_cents / 100:.2f}",
            "status_url": f"/orders/{order.order_id}",
        },
        status_code=202,
        headers={"Location": f"/orders/{order.order_id}"},
    )


@get("/orders/{order_id:str}", tags=["orders"], summary="An order's status")
async def order_status(
    request: Request,
    order_id: str,
    wait: float = Parameter(
        default=0.0, description=("seconds to wait for the final status (long poll)")
    ),
) -> dict:
    """``pending``, ``accepted`` or ``rejected`` (with the reason and a message for the
    customer), and the delivery once decided; 404 when the order is unknown. With ``wait``
    the answer comes as soon as the final status is known, or after ``wait`` seconds."""
    services = _services(request)
    services.caller(request, auth.INTAKE)
    if not 0 <= wait <= services.settings.max_wait_s:
        raise BadRange(f"wait must be 0..{services.settings.max_wait_s:g} seconds")
    doc = await services.intake.status(order_id, wait)
    if doc is None:
        raise HTTPException(status_code=404, detail=f"order {order_id[:64]} is unknown")
    return doc


# -- merchant insights ----------------------------------------------------------------------
def _check_store(store_id: int) -> None:
    if store_id not in STORE_IDS:
        raise HTTPException(status_code=404, detail=f"store {store_id} does not exist")


@get("/stores/{store_id:int}/metrics", tags=["insights"], summary="A store's sales by hour or day")
async def store_metrics(
    request: Request,
    store_id: int,
    from_: str = Parameter(query="from", description="ISO date or date-time, UTC"),
    to: str = Parameter(description="ISO date or date-time, UTC, exclusive"),
    granularity: str = Parameter(default="hour", description="hour or day"),
) -> Response:
    """Closed hours from the warehouse, the open hour live from Redis (``source: live``;
    orders and revenue only). Responses are cached by store and range until a load of any
    hour (a correction) or, when the range reaches the live hours, for ``Api.live_cache_ms``.
    Needs a merchant token covering the store."""
    services = _services(request)
    _check_store(store_id)
    services.caller(request, auth.MERCHANT, store_id)
    start, stop = hour_range(from_, to, granularity)
    insights = services.insights
    key = (store_id, start, stop, granularity)
    body = services.responses.get(key, insights.version)
    if body is None:
        version = insights.version
        hours = (await insights.hours([store_id], start, stop))[store_id]
        body = msgspec.json.encode(
            {
                "store_id": store_id,
                "from": start.isoformat() + "Z",
                "to": stop.isoformat() + "Z",
                "granularity": granularity,
                "totals": totals(hours).to_json(),
                "points": series(hours, granularity),
            }
        )
        # A range reaching into the live window changes as sales arrive: kept only as long
        # as live figures are; an older range changes only with a load (a new version).
        ttl = services.settings.live_cache_ms / 1000 if stop > insights.live_from() else None
        services.responses.put(key, version, body, ttl)
    return Response(body, media_type=MediaType.JSON)


@get("/stores/{store_id:int}/live", tags=["insights"], summary="The current hour, minute by minute")
async def store_live(request: Request, store_id: int) -> dict:
    services = _services(request)
    _check_store(store_id)
    services.caller(request, auth.MERCHANT, store_id)
    hour, live = await services.insights.live_hour(store_id)
    return {
        "store_id": store_id,
        "hour": hour.isoformat() + "Z",
        "totals": live.figures.to_json(),
        "minutes": [
            {"minute": mm, "orders": o, "revenue": f"{c / 100:.2f}"}
            for mm, (o, c) in sorted(live.minutes.items())
        ],
    }


@get("/stores/{store_id:int}/stock", tags=["insights"], summary="A store's stock now")
async def store_stock(request: Request, store_id: int) -> dict:
    """Each ingredient on hand (Redis ``inventory:{<store_id>}``), flagged ``low`` at or below
    its safety stock, where a reorder is due."""
    services = _services(request)
    _check_store(store_id)
    services.caller(request, auth.MERCHANT, store_id)
    return {"store_id": store_id, "ingredients": await services.stock.levels(store_id)}


@get("/rankings", tags=["insights"], summary="The merchant's stores ranked")
async def rankings(
    request: Request,
    from_: str = Parameter(query="from", description="ISO date or date-time, UTC"),
    to: str = Parameter(description="ISO date or date-time, UTC, exclusive"),
    by: str = Parameter(default="revenue", description="revenue or orders"),
) -> dict:
    """The token's stores (only those) ranked over ``[from, to)``."""
    services = _services(request)
    principal = services.caller(request, auth.MERCHANT)
    start, stop = hour_range(from_, to, "day")
    if by not in ("revenue", "orders"):
        raise BadRange(f"by={by[:20]!r}: expected revenue or orders")
    cells = len(principal.stores) * int((stop - start).total_seconds() // 3600)
    if cells > MAX_RANKING_STORE_HOURS:
        raise BadRange(
            f"{len(principal.stores)} stores over {(stop - start).days} days is "
            f"{cells:,} store-hours; at most {MAX_RANKING_STORE_HOURS:,}: "
            f"narrow the range"
        )
    hours = await services.insights.hours(sorted(principal.stores), start, stop)
    return {
        "merchant": principal.subject,
        "from": start.isoformat() + "Z",
        "to": stop.isoformat() + "Z",
        "by": by,
        "stores": rank({s: totals(h) for s, h in hours.items()}, by),
    }


# -- pages ----------------------------------------------------------------------------------
@get("/dashboard", media_type=MediaType.HTML, include_in_schema=False)
async def dashboard() -> str:
    """The merchant dashboard; it reads the token from the URL fragment (never sent to the
    server in a URL) and calls the JSON endpoints above."""
    return DASHBOARD


@get("/health", tags=["service"], summary="Liveness and this process's cache counters")
async def health(request: Request) -> dict:
    services: Services | None = getattr(request.app.state, "services", None)
    counters = (
        {
            **services.insights.counters,
            "responses_hit": services.responses.hits,
            "responses_missed": services.responses.misses,
        }
        if services
        else {}
    )
    return {"status": "ok", "time": time.time(), "pid": os.getpid(), "cache": counters}


# -- errors ---------------------------------------------------------------------------------
def _error(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    return Response(
        {"error": {"status": status, "code": code, "message": message}},
        status_code=status,
        headers=headers,
        media_type=MediaType.JSON,
    )


_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    429: "rate_limited",
}


def _http_error(_: Request, exc: HTTPException) -> Response:
    message = exc.detail
    extra = exc.extra if isinstance(getattr(exc, "extra", None), list) else []
    if extra:
        message += ": " + "; ".join(
            f"{e.get('key', '')} {e.get('message', '')}".strip()
            for e in extra
            if isinstance(e, dict)
        )
    return _error(
        exc.status_code,
        _CODES.get(exc.status_code, "error"),
        message,
        getattr(exc, "headers", None),
    )


def _refused(_: Request, exc: OrderRefused) -> Response:
    rejection = exc.rejection
    return Response(
        {
            "error": {
                "status": exc.http_status,
                "code": rejection.reason,
                "message": rejection.detail,
                "order_status": rejection.status(),
            }
        },
        status_code=exc.http_status,
        media_type=MediaType.JSON,
    )


def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(500, "internal", "internal error; it has been logged")


EXCEPTION_HANDLERS: dict[int | type[Exception], Any] = {
    HTTPException: _http_error,
    OrderRefused: _refused,
    BadRange: lambda _, exc: _error(400, "bad_request", str(exc)),
    auth.Unauthorized: lambda _, exc: _error(
        401, "unauthorized", str(exc), {"WWW-Authenticate": "Bearer"}
    ),
    auth.Forbidden: lambda _, exc: _error(403, "forbidden", str(exc)),
    RateLimited: lambda _, exc: _error(
        429, "rate_limited", str(exc), {"Retry-After": str(max(1, round(exc.retry_after_s)))}
    ),
    psycopg.OperationalError: lambda _, exc: _error(503, "unavailable", "warehouse unavailable"),
    PoolTimeout: lambda _, exc: _error(503, "unavailable", "warehouse busy"),
    StreamRefused: lambda _, exc: _error(
        503, "unavailable", f"order not placed: {exc}; retry", {"Retry-After": "1"}
    ),
    aioredis.ConnectionError: lambda _, exc: _error(503, "unavailable", "redis unavailable"),
    Exception: _unexpected,
}


def create_app(props: Props | None = None) -> Litestar:
    app = Litestar(
        route_handlers=[
            place_order,
            order_status,
            store_metrics,
            store_live,
            store_stock,
            rankings,
            dashboard,
            health,
        ],
        on_startup=[_startup],
        on_shutdown=[_shutdown],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="pizzastream API",
            version="1.0.0",
            description="Order intake and status; merchant insights (hourly metrics, live "
            "figures, stock, rankings). Bearer JWT: an intake token for /orders, "
            "a merchant token scoped to its stores for the rest.",
        ),
    )
    if props is None:
        props = load_properties()
        validate(props)
    app.state.props = props
    return app


app = create_app()
