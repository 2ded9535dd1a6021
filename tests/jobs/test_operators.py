"""``jobs.operators``' choice of JSON decoder: the row types it reads in one streaming pass
(``pizzastream.flink.FlatJsonRows``, JUnit-tested against Flink's JSON format) and the ones
it leaves to Flink's JSON format."""

from pyflink.common import Types

from jobs import hourly_metrics, operators


def test_the_sales_hourly_metrics_reads_are_decoded_in_one_streaming_pass():
    assert operators.flat_kinds(hourly_metrics.SALE_RECORD) == "SISSLLL"


def test_a_row_of_strings_ints_and_longs_gets_a_letter_per_field():
    row = Types.ROW_NAMED(["a", "b", "c"], [Types.LONG(), Types.STRING(), Types.INT()])
    assert operators.flat_kinds(row) == "LSI"


def test_a_row_with_any_other_field_type_is_left_to_flinks_json_format():
    nested = Types.ROW_NAMED(["a", "b"], [Types.STRING(), Types.ROW([Types.INT()])])
    fraction = Types.ROW_NAMED(["a", "b"], [Types.STRING(), Types.DOUBLE()])
    listed = Types.ROW_NAMED(["a"], [Types.BASIC_ARRAY(Types.LONG())])
    assert [operators.flat_kinds(row) for row in (nested, fraction, listed)] == [None] * 3
