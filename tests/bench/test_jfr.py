"""bench.jfr: a sample is charged to the innermost part of the order path on its stack."""

from bench.jfr import part_of, split, thread_group

FANOUT = "pizzastream.flink.BatchOutputs.processElement"
FACTS = "pizzastream.flink.DelimitedRows.parse"
ROCKS_GET = "org.rocksdb.RocksDB.get"
BATCHER = "pizzastream.flink.StoreBatcher.processElement"


def test_the_innermost_named_frame_decides_the_part():
    # a fact row parsed while BatchOutputs fans a line out is the parsing's time
    assert part_of([FACTS, "org.apache.flink.ChainingOutput.pushToOperator", FANOUT]) == (
        "fact/row parsing (DelimitedRows)"
    )
    assert part_of(["java.lang.String.indexOf", FANOUT]) == "line fan-out (BatchOutputs)"
    assert part_of([ROCKS_GET, BATCHER]) == "dedup state (RocksDB get+put, TTL)"
    assert part_of(["java.lang.Thread.run"]) == "other"
    # hourly_metrics: RocksDB under StoreSales is state; its own frames are its part
    store_sales = "pizzastream.flink.StoreSales.fold"
    assert part_of(["org.rocksdb.RocksDB.put", store_sales]) == (
        "dedup state (RocksDB get+put, TTL)"
    )
    assert part_of(["pizzastream.flink.StoreSales$Fingerprints.add", store_sales]) == (
        "store-hours, fingerprints, live view (StoreSales)"
    )
    assert part_of(["pizzastream.flink.JsonRows.flatMap"]) == "JSON decode (JsonRows)"


def test_native_samples_count_only_inside_rocksdb_and_weigh_twice():
    task = "store-batches -> (store-inventory -> batch-outputs) (1/1)#0"
    spent = split(
        [
            ("jdk.ExecutionSample", task, [BATCHER]),
            ("jdk.NativeMethodSample", task, [ROCKS_GET, BATCHER]),
            ("jdk.NativeMethodSample", "grpc-default-worker-ELG-1-1", ["epollWait0"]),
        ]
    )
    assert spent == {
        ("store batches task", "batch building (StoreBatcher)"): 10,
        ("store batches task", "dedup state (RocksDB get+put, TTL)"): 20,
    }


def test_threads_are_grouped_by_task():
    assert thread_group("Source: sequence -> generate-raw (1/1)#0") == "source task"
    assert thread_group("grpc-default-executor-3") == "gRPC (Python crossing)"
    assert thread_group("flink-pekko.actor.default-dispatcher-4") == "other threads"
