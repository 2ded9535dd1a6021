package pizzastream.flink;

import org.apache.flink.connector.kinesis.sink.PartitionKeyGenerator;
import org.apache.flink.types.Row;

/**
 * Partition key of a keyed record {@code Row(partition_key, payload)} built in Python.
 *
 * <p>Output streams stay keyed by store like the input, so one store's events keep their
 * order on one shard; PyFlink only offers fixed or random keys.
 */
public final class KeyedRecordPartitionKey implements PartitionKeyGenerator<Row> {
    private static final long serialVersionUID = 1L;

    @Override
    public String apply(Row record) {
        return String.valueOf(record.getField(0));
    }
}
