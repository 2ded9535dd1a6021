package pizzastream.flink;

import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.connector.kinesis.source.serialization.KinesisDeserializationSchema;
import org.apache.flink.kinesis.shaded.software.amazon.awssdk.services.kinesis.model.Record;
import org.apache.flink.util.Collector;

/**
 * Hands each user record to Python as the exact bytes received.
 *
 * <p>Decoding (UTF-8, JSON) happens in the validation rules, so a malformed or non-UTF-8
 * record becomes a dead letter with its reason instead of failing the source. An aggregated
 * Kinesis record is unpacked here ({@link KinesisAggregation}), within the one call for that
 * Kinesis record, so the source's checkpointed position (one per Kinesis record) still covers
 * exactly the user records emitted; a corrupt aggregate is handed on whole.
 */
public final class RawRecordSchema implements KinesisDeserializationSchema<byte[]> {
    private static final long serialVersionUID = 1L;

    @Override
    public void deserialize(Record record, String stream, String shardId, Collector<byte[]> output) {
        byte[] data = record.data().asByteArray();
        if (!KinesisAggregation.isAggregated(data)) {
            output.collect(data);
            return;
        }
        for (KinesisAggregation.UserRecord user :
                KinesisAggregation.userRecords(record.partitionKey(), data)) {
            output.collect(user.data);
        }
    }

    @Override
    public TypeInformation<byte[]> getProducedType() {
        return PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO;
    }
}
