package pizzastream.flink;

import java.nio.charset.StandardCharsets;
import org.apache.flink.api.common.serialization.SerializationSchema;
import org.apache.flink.types.Row;

/**
 * The payload half of a keyed record {@code Row(partition_key, payload)}: a text payload as
 * UTF-8, a binary one (an aggregate of {@link RecordAggregator}) as it is.
 */
public final class KeyedRecordPayload implements SerializationSchema<Row> {
    private static final long serialVersionUID = 1L;

    @Override
    public byte[] serialize(Row record) {
        Object payload = record.getField(1);
        if (payload instanceof byte[]) {
            return (byte[]) payload;
        }
        return String.valueOf(payload).getBytes(StandardCharsets.UTF_8);
    }
}
