package pizzastream.flink;

import java.io.IOException;
import org.apache.flink.api.common.typeutils.TypeSerializer;
import org.apache.flink.api.common.typeutils.TypeSerializerSnapshot;
import org.apache.flink.api.common.typeutils.base.StringSerializer;
import org.apache.flink.core.memory.DataInputView;
import org.apache.flink.core.memory.DataOutputView;
import org.apache.flink.types.StringValue;

/**
 * The serializer of {@link StoreBatcher}'s dedup keys ({@link DedupKey}), the namespace of each
 * id's state entry: byte for byte what Flink's {@link StringSerializer} writes ({@link
 * StringValue}'s format: the length plus one, then each char, each as little-endian groups of
 * 7 bits with the high bit set on all but the last), so the state entries are the same keys
 * and a checkpoint records {@link StringSerializer}'s snapshot, restorable by either.
 *
 * <p>Why: RocksDB state serializes the namespace on every access, a read and a write per
 * event here, and {@link StringValue#writeString} makes two interface calls per char (the
 * char, then one byte into the output); that was about a third of the dedup's JVM time in the
 * chained benchmark (JFR). This one encodes into an array it keeps and writes it in one call.
 */
public final class DedupKeySerializer extends TypeSerializer<String> {
    private static final long serialVersionUID = 1L;
    private static final int HIGH_BIT = 0x80;

    /** Reused per serializer: {@link #duplicate} gives each user its own. */
    private transient byte[] encoded;

    @Override
    public boolean isImmutableType() {
        return true;
    }

    @Override
    public TypeSerializer<String> duplicate() {
        return new DedupKeySerializer();
    }

    @Override
    public String createInstance() {
        return StringSerializer.INSTANCE.createInstance();
    }

    @Override
    public String copy(String from) {
        return from;
    }

    @Override
    public String copy(String from, String reuse) {
        return from;
    }

    @Override
    public int getLength() {
        return -1;
    }

    @Override
    public void serialize(String record, DataOutputView target) throws IOException {
        if (record == null) {
            target.write(0);    // StringValue's null
            return;
        }
        int length = record.length();
        // a char takes at most 3 groups of 7 bits, the length at most 5
        int most = 5 + 3 * length;
        if (encoded == null || encoded.length < most) {
            encoded = new byte[Math.max(most, 64)];
        }
        byte[] out = encoded;
        int size = 0;
        int lengthPlusOne = length + 1;
        if (lengthPlusOne < 1) {
            throw new IllegalArgumentException("CharSequence is too long.");
        }
        while (lengthPlusOne >= HIGH_BIT) {
            out[size++] = (byte) (lengthPlusOne | HIGH_BIT);
            lengthPlusOne >>>= 7;
        }
        out[size++] = (byte) lengthPlusOne;
        for (int i = 0; i < length; i++) {
            int c = record.charAt(i);
            while (c >= HIGH_BIT) {
                out[size++] = (byte) (c | HIGH_BIT);
                c >>>= 7;
            }
            out[size++] = (byte) c;
        }
        target.write(out, 0, size);
    }

    @Override
    public String deserialize(DataInputView source) throws IOException {
        return StringValue.readString(source);
    }

    @Override
    public String deserialize(String reuse, DataInputView source) throws IOException {
        return deserialize(source);
    }

    @Override
    public void copy(DataInputView source, DataOutputView target) throws IOException {
        StringValue.copyString(source, target);
    }

    @Override
    public boolean equals(Object obj) {
        return obj instanceof DedupKeySerializer;
    }

    @Override
    public int hashCode() {
        return DedupKeySerializer.class.hashCode();
    }

    /** {@link StringSerializer}'s: the bytes are the same, so a checkpoint names the state's
     * namespace serializer as it did before, and either serializer restores it. */
    @Override
    public TypeSerializerSnapshot<String> snapshotConfiguration() {
        return new StringSerializer.StringSerializerSnapshot();
    }
}
