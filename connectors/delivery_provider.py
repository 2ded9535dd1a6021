"""HTTP client of the third-party delivery provider (locally: ``stack/provider.py``).

Every call has a timeout and a bounded number of attempts. The order id is the
idempotency key (header ``Idempotency-Key`` and body), so repeating a dispatch after a
lost answer cannot book a second courier with the same partner: the provider answers
with the delivery id it already gave.

What a caller gets:
- ``dispatch`` → ``OfferResult``: ``accepted`` with the delivery id, ``refused`` (409), or
  ``timed_out`` when no attempt got an answer in time (the partner may have taken it: the
  caller cancels before offering the order elsewhere);
- ``ProviderUnavailable`` when every attempt failed for the provider's own reasons
  (connection refused, 5xx) without any timing out: a fault of the infrastructure, which
  the delivery service retries later instead of denying the delivery.

An answer is checked before it is believed: a 200 to a dispatch without a usable delivery
id (missing, not a short printable string, not JSON at all) counts as no answer (the partner
may have booked the courier: ``timed_out``, so the caller cancels before offering the order
elsewhere), and a dispatch list of another shape as the provider failing. Nothing a provider
sends makes a call raise anything else (``tests/connectors/test_delivery_provider.py`` fuzzes it).
"""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from pizzastream.delivery import REFUSED, TIMED_OUT, OfferResult
from pizzastream.orders import is_id
from pizzastream.settings import DeliverySettings

log = logging.getLogger(__name__)


class ProviderUnavailable(RuntimeError):
    """The provider could not be reached or failed; retry the whole decision later."""


class _Timeout(Exception):
    pass


@dataclass(frozen=True)
class ActiveDispatch:
    partner_id: int
    delivery_id: str


class DeliveryProviderClient:
    def __init__(
        self, base_url: str, timeout_s: float = 2.0, attempts: int = 3, backoff_s: float = 0.2
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s

    @classmethod
    def from_properties(cls, props: Mapping[str, Mapping[str, str]]) -> DeliveryProviderClient:
        group = DeliverySettings.from_group(props["Delivery"])
        return cls(
            group.provider_url,
            group.provider_timeout_s,
            group.provider_attempts,
            group.provider_backoff_s,
        )

    # -- API ---------------------------------------------------------------------------

    def dispatch(self, order_id: str, partner_id: int, details: Mapping[str, Any]) -> OfferResult:
        body = {**details, "order_id": order_id, "partner_id": partner_id}
        timed_out = False
        last_error = ""
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                status, answer = self._call("POST", "/dispatch", body, order_id)
            except _Timeout:
                timed_out = True
                last_error = f"no answer within {self.timeout_s}s"
                continue
            except ProviderUnavailable as error:
                last_error = str(error)
                continue
            if status == 200:
                delivery_id = answer.get("delivery_id")
                if is_id(delivery_id):
                    return OfferResult.accepted(delivery_id)
                timed_out = True
                last_error = f"HTTP 200 without a usable delivery id: {_shown(answer)}"
                continue
            if status == 409:
                return REFUSED
            last_error = f"HTTP {status}: {_shown(answer)}"
        if timed_out:
            log.warning(
                "dispatch %s to partner %s timed out (%s)", order_id, partner_id, last_error
            )
            return TIMED_OUT
        raise ProviderUnavailable(f"dispatch {order_id} to partner {partner_id}: {last_error}")

    def cancel(self, order_id: str, partner_id: int) -> bool:
        """Withdraws an offer (idempotent); True if a dispatch was active."""
        answer = self._retrying(
            "POST", "/cancel", {"order_id": order_id, "partner_id": partner_id}, order_id
        )
        return answer.get("cancelled") is True

    def dispatches(self, order_id: str | None = None) -> dict[str, Any]:
        path = "/dispatches" + (f"?order_id={quote(order_id)}" if order_id else "")
        return self._retrying("GET", path, None, order_id)

    def active_dispatch(self, order_id: str) -> ActiveDispatch | None:
        """The partner that holds this order now, if any: how a retried or replayed order
        finds a courier booked by an attempt that died before recording it."""
        listed = self.dispatches(order_id).get("dispatches")
        try:
            active = [
                d
                for d in listed  # type: ignore[union-attr]  # a missing list is caught below as unreadable
                if d["order_id"] == order_id and d["status"] == "active"
            ]
            if not active:
                return None
            first = min(active, key=lambda d: d["first_at"])
            partner_id, delivery_id = first["partner_id"], first["delivery_id"]
        except (TypeError, KeyError, AttributeError) as error:
            raise ProviderUnavailable(
                f"dispatches of {order_id}: unreadable answer "
                f"({type(error).__name__}): {_shown(listed)}"
            ) from None
        if type(partner_id) is not int or not is_id(delivery_id):
            raise ProviderUnavailable(
                f"dispatches of {order_id}: unreadable dispatch {_shown(first)}"
            )
        return ActiveDispatch(partner_id, delivery_id)

    # -- transport ---------------------------------------------------------------------

    def _retrying(self, method: str, path: str, body: Any, key: str | None) -> dict[str, Any]:
        last_error = ""
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                status, answer = self._call(method, path, body, key)
            except _Timeout:
                last_error = f"no answer within {self.timeout_s}s"
                continue
            except ProviderUnavailable as error:
                last_error = str(error)
                continue
            if status == 200:
                return answer
            last_error = f"HTTP {status}: {_shown(answer)}"
        raise ProviderUnavailable(f"{method} {path}: {last_error}")

    def _call(self, method: str, path: str, body: Any, key: str | None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if key:
            request.add_header("Idempotency-Key", key)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, _json(error.read())
        except TimeoutError as error:
            raise _Timeout() from error
        except urllib.error.URLError as error:
            if isinstance(error.reason, (TimeoutError, socket.timeout)):
                raise _Timeout() from error
            raise ProviderUnavailable(f"{self.base_url}: {error.reason}") from error
        except (ConnectionError, OSError) as error:
            raise ProviderUnavailable(f"{self.base_url}: {error}") from error


def _json(payload: bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload or b"{}")
    except (ValueError, RecursionError):
        return {"raw": payload[:200].decode("utf-8", "replace")}
    return value if isinstance(value, dict) else {"value": value}


def _shown(value: object) -> str:
    """An answer in an error message: bounded, and escaped so that it can be logged and
    stored (no NUL, no lone surrogate)."""
    try:
        text = ascii(value)
    except RecursionError:
        return "(nested too deep to show)"
    return text if len(text) <= 200 else text[:200] + "…"
