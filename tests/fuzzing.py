"""What the fuzz tests share: awkward text and JSON values to draw, the check that a text
can be stored and logged, and the budget of the fuzz tests that go through real servers,
from the hypothesis profile in force (``tests/conftest.py``: ``ci`` by default,
``HYPOTHESIS_PROFILE=bench`` for ten times more): each of their examples costs a round trip
through S3 and PostgreSQL, so they take a fixed share of the profile's ``max_examples``."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

# Text an input may hold: anything, plus what broke jobs before (a lone surrogate, which
# UTF-8 cannot encode; a NUL, which PostgreSQL text refuses; separators; number look-alikes).
AWKWARD_TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["\ud800", "a\x00b", "\n", "", "\u2028", "x" * 300, "007", " 3", "3.0"]),
)


def json_values(text=AWKWARD_TEXT, max_leaves: int = 6):
    """Any JSON value: null, booleans, integers past 64 bits, floats, ``text``, nested."""
    return st.recursive(
        st.one_of(
            st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), text
        ),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
        max_leaves=max_leaves,
    )


def storable(text: str | None) -> bool:
    """What PostgreSQL ``text``, PyFlink's string coder and a log take: UTF-8 can encode
    it (no lone surrogate) and it holds no NUL (None: nothing to store)."""
    if text is None:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def profile_examples() -> int:
    """``max_examples`` of the hypothesis profile in force."""
    profile = settings.default
    assert profile is not None, "no hypothesis profile loaded"
    return profile.max_examples


def server_fuzz_settings(share: float = 0.2) -> settings:
    """Settings of a fuzz test through the local stack: ``share`` of the profile's budget,
    no per-example deadline (a server round trip varies with the machine's load)."""
    return settings(
        max_examples=max(10, int(profile_examples() * share)),
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
