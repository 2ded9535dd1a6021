"""The consumer-lag guard of ``python -m pizzastream.admin shards --apply`` on the local stack,
through the real GetMetricData path: the stream's ``GetRecords.IteratorAgeMilliseconds`` is
put into moto's CloudWatch (moto emits no Kinesis metrics of its own), with
``Resharding.lag_source`` ``cloudwatch``. A lag over ``max_consumer_lag_ms`` (or none at all)
makes ``--apply`` refuse and leave the shard map alone; ``--even-if-behind`` goes on; a lag
within the bound goes on. The plan is one split: two stores of 200 records each in the window
on the lower of two shards (133% of a shard of 1 record/s over 300 s)."""

from __future__ import annotations

import datetime as dt

import pytest

from connectors import aws
from pizzastream import resharding as rs
from tests.admin_shards_support import RESHARDING_ENV, open_shards, run_shards, scratch_stream

pytestmark = pytest.mark.integration

ENV = {
    **RESHARDING_ENV,
    "PIZZASTREAM__RESHARDING__LAG_SOURCE": "cloudwatch",
    "PIZZASTREAM__RESHARDING__MAX_CONSUMER_LAG_MS": "60000",
    "PIZZASTREAM__RESHARDING__LAG_LOOKBACK_S": "300",
}


@pytest.fixture
def stream(local_stack, monkeypatch):
    with scratch_stream(local_stack, monkeypatch, ENV, "guard", 2) as (kinesis, name):
        shards = open_shards(kinesis, name)
        hot = [
            str(k)
            for k in range(1, 5000)
            if shards[0].start <= rs.hash_key(str(k)) <= shards[0].end
        ][:2]
        records = [
            {"PartitionKey": key, "Data": f"{key}-{i}".encode()} for key in hot for i in range(200)
        ]
        for start in range(0, len(records), 500):
            assert (
                kinesis.put_records(StreamName=name, Records=records[start : start + 500]).get(
                    "FailedRecordCount", 0
                )
                == 0
            )
        yield kinesis, aws.client(local_stack, "cloudwatch"), name


def _lag(cloudwatch, name: str, value: float) -> None:
    cloudwatch.put_metric_data(
        Namespace="AWS/Kinesis",
        MetricData=[
            {
                "MetricName": "GetRecords.IteratorAgeMilliseconds",
                "Value": value,
                "Timestamp": dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
                "Dimensions": [{"Name": "StreamName", "Value": name}],
            }
        ],
    )


def test_a_stream_behind_is_not_resharded_unless_even_if_behind(stream, capsys):
    kinesis, cloudwatch, name = stream
    _lag(cloudwatch, name, 5_000)
    _lag(cloudwatch, name, 240_000)  # one reader four minutes behind
    before = open_shards(kinesis, name)

    code, out, err = run_shards(capsys, "--stream", name)  # a dry run says so, changes nothing
    assert code == 0 and "240,000 ms" in out and "it would refuse now" in out, out
    code, out, err = run_shards(capsys, "--stream", name, "--apply")
    assert code == 3, (out, err)
    assert "refused" in err and "240,000 ms" in err and "FLINK-32218" in err, err
    assert "docs/resharding.md" in err and "done:" not in out
    assert open_shards(kinesis, name) == before  # nothing changed

    code, out, err = run_shards(capsys, "--stream", name, "--apply", "--even-if-behind")
    assert code == 0 and out.count("done: split") == 1, (out, err)
    assert "--even-if-behind" in out
    assert len(open_shards(kinesis, name)) == 3


def test_a_stream_caught_up_is_resharded(stream, capsys):
    kinesis, cloudwatch, name = stream
    _lag(cloudwatch, name, 800)
    code, out, err = run_shards(capsys, "--stream", name, "--apply")
    assert code == 0 and out.count("done: split") == 1, (out, err)
    assert "800 ms" in out and "within" in out
    assert len(open_shards(kinesis, name)) == 3


def test_a_stream_nobody_polls_is_not_resharded_unless_even_if_behind(stream, capsys):
    kinesis, _, name = stream
    before = open_shards(kinesis, name)
    code, out, err = run_shards(capsys, "--stream", name, "--apply")
    assert code == 3 and "no GetRecords.IteratorAgeMilliseconds datapoint" in err, (out, err)
    assert open_shards(kinesis, name) == before
    code, out, err = run_shards(capsys, "--stream", name, "--apply", "--even-if-behind")
    assert code == 0 and out.count("done: split") == 1, (out, err)


def test_locally_the_lag_is_not_checked_and_the_report_says_so(stream, capsys, monkeypatch):
    _, cloudwatch, name = stream
    monkeypatch.setenv("PIZZASTREAM__RESHARDING__LAG_SOURCE", "none")
    _lag(cloudwatch, name, 240_000)  # not read
    code, out, err = run_shards(capsys, "--stream", name)
    assert code == 0 and "not checked" in out and "240,000" not in out, out
    code, out, err = run_shards(capsys, "--stream", name, "--apply")
    assert code == 0 and out.count("done: split") == 1, (out, err)
