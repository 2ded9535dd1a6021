package pizzastream.flink;

import org.apache.flink.api.common.serialization.DeserializationSchema;
import org.apache.flink.api.common.typeinfo.PrimitiveArrayTypeInfo;
import org.apache.flink.api.common.typeinfo.TypeInformation;

/**
 * Hands each Kinesis record to Python as the exact bytes received.
 *
 * <p>Decoding (UTF-8, JSON) happens in the validation rules, so a malformed or non-UTF-8
 * record becomes a dead letter with its reason instead of failing the source.
 */
public final class RawRecordSchema implements DeserializationSchema<byte[]> {
    private static final long serialVersionUID = 1L;

    @Override
    public byte[] deserialize(byte[] message) {
        return message;
    }

    @Override
    public boolean isEndOfStream(byte[] nextElement) {
        return false;
    }

    @Override
    public TypeInformation<byte[]> getProducedType() {
        return PrimitiveArrayTypeInfo.BYTE_PRIMITIVE_ARRAY_TYPE_INFO;
    }
}
