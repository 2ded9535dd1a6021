package pizzastream.flink;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotSame;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.api.common.typeutils.TypeSerializer;
import org.apache.flink.api.common.typeutils.TypeSerializerSchemaCompatibility;
import org.apache.flink.api.common.typeutils.base.StringSerializer;
import org.apache.flink.core.memory.DataInputDeserializer;
import org.apache.flink.core.memory.DataOutputSerializer;
import org.junit.jupiter.api.Test;

class DedupKeySerializerTest {
    private static final List<String> KEYS = keys();

    private static List<String> keys() {
        List<String> keys = new ArrayList<>(List.of(
                "", "o:B7-1", "r:0f3c2a1e-1b2c-4d5e-8f90-123456789abc", "o#AAEC/+==",
                "o:caf\u00e9", "o:\u20ac\u00ff\u0100", "o:\ud83c\udf55", "o:\u0000\u007f\u0080",
                "o:\uffff"));
        keys.add("o:" + "x".repeat(125));       // the length takes two bytes from 128 on
        keys.add("o:" + "y".repeat(126));
        keys.add("o:" + "\u00e9".repeat(20_000));  // three bytes of length, two per char
        return keys;
    }

    private static byte[] bytes(TypeSerializer<String> serializer, String key) throws IOException {
        DataOutputSerializer out = new DataOutputSerializer(16);
        out.writeByte(0x5A);      // written after other bytes, as after a state's key
        serializer.serialize(key, out);
        return out.getCopyOfBuffer();
    }

    @Test
    void writesTheBytesOfFlinksStringSerializer() throws IOException {
        DedupKeySerializer serializer = new DedupKeySerializer();
        for (String key : KEYS) {
            assertArrayEquals(bytes(StringSerializer.INSTANCE, key), bytes(serializer, key), key);
        }
        assertArrayEquals(bytes(StringSerializer.INSTANCE, null), bytes(serializer, null));
        // the array it keeps, used again for a shorter key after a long one
        assertArrayEquals(bytes(StringSerializer.INSTANCE, "o:B7-2"), bytes(serializer, "o:B7-2"));
    }

    @Test
    void readsAndCopiesWhatItWrites() throws IOException {
        DedupKeySerializer serializer = new DedupKeySerializer();
        DataOutputSerializer out = new DataOutputSerializer(16);
        for (String key : KEYS) {
            serializer.serialize(key, out);
        }
        DataInputDeserializer in = new DataInputDeserializer(out.getCopyOfBuffer());
        DataOutputSerializer copied = new DataOutputSerializer(16);
        for (String key : KEYS) {
            assertEquals(key, serializer.deserialize(in));
        }
        in = new DataInputDeserializer(out.getCopyOfBuffer());
        for (int i = 0; i < KEYS.size(); i++) {
            serializer.copy(in, copied);
        }
        assertArrayEquals(out.getCopyOfBuffer(), copied.getCopyOfBuffer());
    }

    @Test
    void aCheckpointNamesStringSerializerAndEitherRestoresIt() {
        DedupKeySerializer serializer = new DedupKeySerializer();
        var snapshot = serializer.snapshotConfiguration();
        assertEquals(StringSerializer.StringSerializerSnapshot.class, snapshot.getClass());
        TypeSerializerSchemaCompatibility<String> fromStringSerializer =
                snapshot.resolveSchemaCompatibility(
                        StringSerializer.INSTANCE.snapshotConfiguration());
        assertEquals(true, fromStringSerializer.isCompatibleAsIs());
        TypeSerializerSchemaCompatibility<String> byStringSerializer =
                StringSerializer.INSTANCE.snapshotConfiguration()
                        .resolveSchemaCompatibility(snapshot);
        assertEquals(true, byStringSerializer.isCompatibleAsIs());
        assertEquals(-1, serializer.getLength());   // variable length, as StringSerializer
        assertNotSame(serializer, serializer.duplicate());
        assertEquals(serializer, serializer.duplicate());
    }
}
