"""What PyFlink itself costs, measured next to the jobs: the JVM-Python crossing alone,
with no rules (``cross_*``), one crossing per event as the order path had before it
crossed once per batch (docs/benchmarks.md). Nothing here is used by the jobs."""
from __future__ import annotations

from pyflink.common import Row, Types
from pyflink.datastream import DataStream, KeyedProcessFunction, ProcessFunction
from pyflink.datastream.state import ValueStateDescriptor

RAW = Types.PRIMITIVE_ARRAY(Types.BYTE())
KEYED_RECORD = Types.ROW_NAMED(["partition_key", "payload"], [Types.STRING(), Types.STRING()])
TAGGED_RECORD = Types.ROW([Types.STRING(), RAW])


# ------------------------------------------------------------------ the crossing alone

class _Passthrough(ProcessFunction):
    def process_element(self, value, ctx):
        yield value


class _KeyedPassthrough(KeyedProcessFunction):
    def __init__(self, state: bool):
        self._use_state = state

    def open(self, runtime_context):
        if self._use_state:
            self._state = runtime_context.get_state(
                ValueStateDescriptor("n", Types.PICKLED_BYTE_ARRAY()))

    def process_element(self, value, ctx):
        key = ctx.get_current_key()
        if self._use_state:
            count = self._state.value() or [0]
            count[0] += 1
            self._state.update(count)
        yield Row(key, "")


def passthrough(raw: DataStream) -> DataStream:
    return raw.process(_Passthrough(), output_type=RAW).name("passthrough")


def keyed_passthrough(tagged: DataStream, state: bool) -> DataStream:
    from jobs import runtime

    return (runtime.key_by_store(tagged, TAGGED_RECORD)
            .process(_KeyedPassthrough(state), output_type=KEYED_RECORD)
            .name("keyed-passthrough"))
