"""The order status lifecycle (``pizzastream.order_status``): statuses only move forward, the
first final status stays, a replay changes nothing, a refused write is one dead letter."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pizzastream.dead_letters import dead_letter
from pizzastream.order_status import (
    CONFLICT_REASON,
    FINAL,
    PENDING,
    Outcome,
    conflict_dead_letter,
    is_final,
    rank,
    settle,
    transition,
)
from pizzastream.orders import OrderStatus

FINALS = sorted(FINAL)
STATUSES = st.sampled_from([*FINALS, PENDING, "garbage"])


def test_the_final_statuses_are_the_contracts():
    assert {
        "accepted",
        "rejected:unknown_product",
        "rejected:insufficient_inventory",
        "rejected:invalid",
    } == FINAL
    assert all(is_final(s) for s in FINAL) and not is_final(PENDING) and not is_final(None)
    assert rank(None) < rank("garbage") < rank(PENDING) < rank(OrderStatus.ACCEPTED)


def test_a_final_status_is_never_replaced_by_another():
    assert transition(None, "accepted") is Outcome.WRITE
    assert transition("accepted", "rejected:invalid") is Outcome.CONFLICT
    assert transition("rejected:invalid", "accepted") is Outcome.CONFLICT
    assert transition("accepted", "accepted") is Outcome.SAME
    assert transition(PENDING, "accepted") is Outcome.WRITE  # forward
    assert transition("accepted", PENDING) is Outcome.CONFLICT  # never backwards
    assert transition(None, PENDING) is Outcome.WRITE
    assert transition("garbage", "rejected:invalid") is Outcome.WRITE


@given(st.lists(STATUSES, max_size=12), st.randoms())
def test_writes_in_any_order_end_in_the_first_final_status(writes, random):
    shuffled = writes[:]
    random.shuffle(shuffled)
    for sequence in (writes, shuffled):
        status, conflicts = settle(sequence)
        finals = [w for w in sequence if is_final(w)]
        if finals:
            assert status == finals[0]
            # every later final write of another status was refused, and only those (and
            # moves backwards)
            assert [r for r, _ in conflicts if is_final(r)] == [
                w for w in finals[1:] if w != finals[0]
            ]
            assert all(kept == status for r, kept in conflicts if is_final(r))
        else:
            assert status is None or rank(status) == max(rank(w) for w in sequence)


@given(st.lists(STATUSES, max_size=12))
def test_a_replay_of_the_same_status_is_a_no_op(writes):
    status, conflicts = settle(writes)
    if status is not None:
        assert transition(status, status) is Outcome.SAME
        assert settle(writes + [status]) == (status, conflicts)
        # replaying the whole sequence again refuses the same writes once more, changes nothing
        again, more = settle(writes, status)
        assert again == status and all(kept == status for _, kept in more)


@given(STATUSES, STATUSES)
def test_a_write_moves_forward_or_is_refused(current, new):
    outcome = transition(current, new)
    status, conflicts = settle([new], current)
    if outcome is Outcome.WRITE:
        assert rank(new) > rank(current) and status == new and not conflicts
    elif outcome is Outcome.SAME:
        assert status == current == new and not conflicts
    else:
        assert status == current and conflicts == [(new, current)]
        assert rank(new) <= rank(current)


def test_a_conflict_is_a_dead_letter_named_by_the_order_that_a_replay_lands_on_again():
    letter = conflict_dead_letter(
        "order_enrichment", "S0007-000001", "rejected:invalid", "accepted"
    )
    assert (letter.job, letter.reason, letter.order_id) == (
        "order_enrichment",
        CONFLICT_REASON,
        "S0007-000001",
    )
    assert (letter.event_id, letter.store_id) == (None, None)
    assert letter.payload == "S0007-000001\trejected:invalid\taccepted"
    assert "rejected:invalid" in letter.detail and "accepted" in letter.detail
    assert letter == conflict_dead_letter(
        "order_enrichment", "S0007-000001", "rejected:invalid", "accepted"
    )
    assert (
        letter.dead_letter_id
        == dead_letter(
            "order_enrichment", letter.payload.encode(), CONFLICT_REASON, ""
        ).dead_letter_id
    )
    others = {
        conflict_dead_letter(
            "inventory_windowing", "S0007-000001", "rejected:invalid", "accepted"
        ).dead_letter_id,
        conflict_dead_letter(
            "order_enrichment", "S0007-000002", "rejected:invalid", "accepted"
        ).dead_letter_id,
        conflict_dead_letter(
            "order_enrichment", "S0007-000001", "rejected:unknown_product", "accepted"
        ).dead_letter_id,
    }
    assert letter.dead_letter_id not in others and len(others) == 3


@given(
    st.lists(st.sampled_from(FINALS), max_size=10),
    st.sampled_from([None, PENDING, "garbage", *FINALS]),
    st.data(),
)
def test_a_batch_of_final_statuses_sent_again_after_part_of_it_landed_settles_as_one_send(
    writes, current, data
):
    """The jobs' status writers (``pizzastream.flink.OrderStatusGate``) send a batch again
    when the connection drops, and any first part of it may have landed: the batch then
    refuses the same writes, keeping the same status, as one uninterrupted send. A write that
    landed is a replay (``SAME``) the second time, since the jobs write only final statuses and
    a final status stays."""
    landed = data.draw(st.integers(0, len(writes)))
    partly, _ = settle(writes[:landed], current)
    assert settle(writes, partly) == settle(writes, current)


def test_a_batch_with_a_status_before_a_final_one_is_not_safe_to_send_again():
    """Why the precondition above: a pending status moved past by a final one in the same
    batch is refused when the batch goes again (a move backwards). No job writes one."""
    once = settle([PENDING, "accepted"])
    assert once == ("accepted", [])
    assert settle([PENDING, "accepted"], once[0]) == ("accepted", [(PENDING, "accepted")])
