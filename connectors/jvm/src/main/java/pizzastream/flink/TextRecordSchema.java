package pizzastream.flink;

import java.nio.charset.StandardCharsets;
import org.apache.flink.api.common.typeinfo.TypeInformation;
import org.apache.flink.api.common.typeinfo.Types;
import org.apache.flink.connector.kinesis.source.serialization.KinesisDeserializationSchema;
import org.apache.flink.kinesis.shaded.software.amazon.awssdk.services.kinesis.model.Record;
import org.apache.flink.util.Collector;

/**
 * Each user record as UTF-8 text, aggregated Kinesis records unpacked in the one call for
 * that Kinesis record (see {@link RawRecordSchema}); what Flink's SimpleStringSchema gave
 * before the streams carried aggregates.
 */
public final class TextRecordSchema implements KinesisDeserializationSchema<String> {
    private static final long serialVersionUID = 1L;

    @Override
    public void deserialize(Record record, String stream, String shardId, Collector<String> output) {
        byte[] data = record.data().asByteArray();
        for (KinesisAggregation.UserRecord user :
                KinesisAggregation.userRecords(record.partitionKey(), data)) {
            output.collect(new String(user.data, StandardCharsets.UTF_8));
        }
    }

    @Override
    public TypeInformation<String> getProducedType() {
        return Types.STRING;
    }
}
