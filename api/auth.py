"""Who may call the API, on which stores, how often.

Two kinds of signed bearer token (JWT, HS256, secret ``Api.token_secret``):
- a **merchant** token names the merchant (``sub``) and the stores it owns (``stores``);
  every store-scoped read checks the store is among them, rankings cover only them;
- an **intake** token is the order-taking application's own credential: it may place
  orders and read their status, and nothing else; a merchant token cannot place orders.

Tokens carry an expiry and an id (``jti``); the rate limit is per token id, a token
bucket (``rate`` per second, bursts of ``burst``) kept in each API process.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

import jwt

MERCHANT, INTAKE = "merchant", "intake"
ROLES = (MERCHANT, INTAKE)
ALGORITHM = "HS256"
MAX_STORES_PER_TOKEN = 5000
_VERIFIED_CACHE = 10_000


class Unauthorized(Exception):
    """No usable credential: 401."""


class Forbidden(Exception):
    """A valid credential that does not cover this request: 403."""


@dataclass(frozen=True)
class Principal:
    """The verified caller."""

    subject: str
    role: str
    stores: frozenset[int]
    token_id: str
    expires_at: float

    def require_role(self, role: str) -> None:
        if self.role != role:
            raise Forbidden(
                f"this needs an {role} token, not a {self.role} token"
                if role == INTAKE
                else f"this needs a {role} token, not an {self.role} token"
            )

    def require_store(self, store_id: int) -> None:
        self.require_role(MERCHANT)
        if store_id not in self.stores:
            raise Forbidden(f"store {store_id} is not one of this merchant's stores")


def issue(
    secret: str,
    subject: str,
    role: str,
    stores: Iterable[int] = (),
    ttl_s: int = 30 * 24 * 3600,
    now: float | None = None,
) -> str:
    """A signed token. Merchant tokens must name at least one store."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    store_list = sorted(set(int(s) for s in stores))
    if role == MERCHANT and not store_list:
        raise ValueError("a merchant token needs at least one store")
    if len(store_list) > MAX_STORES_PER_TOKEN:
        raise ValueError(f"at most {MAX_STORES_PER_TOKEN} stores per token")
    issued = int(now if now is not None else time.time())
    claims = {
        "sub": subject,
        "role": role,
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    if role == MERCHANT:
        claims["stores"] = store_list
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


class Verifier:
    """Checks bearer tokens; verified tokens are remembered (until they expire) so a busy
    caller pays for the signature check once, not on every request."""

    def __init__(self, secret: str):
        self._secret = secret
        self._verified: OrderedDict[str, Principal] = OrderedDict()

    def principal(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("missing Authorization: Bearer <token>")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("Authorization must be 'Bearer <token>'")
        now = time.time()
        known = self._verified.get(token)
        if known is not None:
            if known.expires_at > now:
                return known
            del self._verified[token]
        principal = self._verify(token)
        self._verified[token] = principal
        if len(self._verified) > _VERIFIED_CACHE:
            self._verified.popitem(last=False)
        return principal

    def _verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "sub", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("token expired") from None
        except jwt.InvalidTokenError as error:
            raise Unauthorized(f"invalid token: {error}") from None
        role = claims.get("role")
        stores = claims.get("stores", [])
        if (
            role not in ROLES
            or not isinstance(stores, list)
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in stores)
        ):
            raise Unauthorized("invalid token: bad role or stores claim")
        return Principal(
            str(claims["sub"]), role, frozenset(stores), str(claims["jti"]), float(claims["exp"])
        )


class RateLimiter:
    """A token bucket per token id: ``rate`` requests per second on average, ``burst`` at
    once. ``admit`` returns 0 when the request may go, else the seconds until it could."""

    def __init__(self, rate: float, burst: float):
        self._rate = rate
        self._burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # id -> (tokens, at)

    def admit(self, key: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.get(key, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > 100_000:  # forget idle callers (a full bucket is the default)
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
        return (1 - tokens) / self._rate
