package pizzastream.flink;

import java.nio.charset.StandardCharsets;
import org.apache.flink.api.common.serialization.SerializationSchema;
import org.apache.flink.types.Row;

/** The payload half of a keyed record {@code Row(partition_key, payload)}, as UTF-8. */
public final class KeyedRecordPayload implements SerializationSchema<Row> {
    private static final long serialVersionUID = 1L;

    @Override
    public byte[] serialize(Row record) {
        return String.valueOf(record.getField(1)).getBytes(StandardCharsets.UTF_8);
    }
}
