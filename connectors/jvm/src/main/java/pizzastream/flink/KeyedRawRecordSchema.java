package pizzastream.flink;

import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.connector.kinesis.source.serialization.KinesisDeserializationSchema;
import org.apache.flink.kinesis.shaded.software.amazon.awssdk.services.kinesis.model.Record;
import org.apache.flink.types.Row;
import org.apache.flink.util.Collector;

/**
 * A Kinesis record as {@code Row(partition_key, Row(kind, data))}; {@code kind} names the
 * source stream, so several streams unioned into one keyed function stay distinguishable.
 *
 * <p>Every pizzastream stream is partitioned by store, so the partition key already is the
 * key of the per-store state. Emitting it from the JVM lets a keyed Python function be fed
 * without PyFlink's key-extracting Python operator: one JVM-Python crossing per event, not two.
 *
 * <p>An aggregated Kinesis record is unpacked into its user records, each with its own
 * partition key, within the one call for that Kinesis record (see {@link RawRecordSchema}).
 */
public final class KeyedRawRecordSchema implements KinesisDeserializationSchema<Row> {
    private static final long serialVersionUID = 1L;

    /** {@code Row(partition_key, Row(kind, data))}. */
    public static final TypeInformation<Row> TYPE =
            Types.ROW(
                    Types.STRING,
                    Types.ROW(Types.STRING, PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO));

    private final String kind;

    public KeyedRawRecordSchema(String kind) {
        this.kind = kind;
    }

    @Override
    public void deserialize(Record record, String stream, String shardId, Collector<Row> output) {
        byte[] data = record.data().asByteArray();
        if (!KinesisAggregation.isAggregated(data)) {
            output.collect(Row.of(record.partitionKey(), Row.of(kind, data)));
            return;
        }
        for (KinesisAggregation.UserRecord user :
                KinesisAggregation.userRecords(record.partitionKey(), data)) {
            output.collect(Row.of(user.partitionKey, Row.of(kind, user.data)));
        }
    }

    @Override
    public TypeInformation<Row> getProducedType() {
        return TYPE;
    }
}
