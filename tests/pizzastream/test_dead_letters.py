"""A dead letter's identity: a replayed bad record lands on its row again; each repeat of
an event is a row of its own, the same after a restore (``pizzastream.dead_letters``)."""

from __future__ import annotations

from pizzastream.dead_letters import PAYLOAD_LIMIT, dead_letter


def test_the_same_bad_record_is_the_same_row_and_another_job_or_record_is_not():
    first = dead_letter("order_enrichment", b"{not json", "malformed_json", "x")
    assert (
        dead_letter("order_enrichment", b"{not json", "malformed_json", "y").dead_letter_id
        == first.dead_letter_id
    )
    assert (
        dead_letter("inventory_windowing", b"{not json", "malformed_json", "x").dead_letter_id
        != first.dead_letter_id
    )
    assert (
        dead_letter("order_enrichment", b"{not json!", "malformed_json", "x").dead_letter_id
        != first.dead_letter_id
    )


def test_each_repeat_of_an_event_is_a_row_of_its_own():
    record = b'{"o":"A-1","e":"E-1"}'
    ids = [
        dead_letter(
            "inventory_windowing", record, "duplicate_order", "", "E-1", "A-1", occurrence=n
        ).dead_letter_id
        for n in (1, 2, 3)
    ]
    assert len(set(ids)) == 3
    assert (
        ids[1]
        == dead_letter(
            "inventory_windowing", record, "duplicate_order", "later", occurrence=2
        ).dead_letter_id
    )
    assert (
        dead_letter("inventory_windowing", record, "duplicate_order", "").dead_letter_id not in ids
    )


def test_the_payload_is_printable_and_bounded():
    letter = dead_letter("j", b"\x00\xff" + b"x" * (2 * PAYLOAD_LIMIT), "oversize", "")
    assert letter.payload.startswith("\\x00\\xff")
    assert letter.payload.endswith(f"…[{2 * PAYLOAD_LIMIT + 2} bytes]")


def test_the_store_is_kept_when_the_column_can_hold_it():
    assert dead_letter("j", b"x", "r", "", store_id=17).store_id == 17
    for unusable in (2**31, -(2**31) - 1, 10**20, True, "17", 17.0, None):
        assert dead_letter("j", b"x", "r", "", store_id=unusable).store_id is None
    assert dead_letter("j", b"x", "r", "").as_tuple()[-1] is None
