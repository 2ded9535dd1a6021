package pizzastream.flink;

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * KPL aggregated records, the JVM's one home for writing and reading them.
 *
 * <p>A shard takes 1,000 records/s; a store hotter than that cannot be helped by splitting,
 * only by packing its events into fewer records. The format is the Kinesis Producer
 * Library's, so standard consumers (KCL, Lambda's aws_kinesis_agg) de-aggregate it: magic
 * {@code F3 89 9A C2}, the protobuf {@code AggregatedRecord{repeated string
 * partition_key_table = 1; repeated string explicit_hash_key_table = 2; repeated Record
 * records = 3}} with {@code Record{uint64 partition_key_index = 1; uint64
 * explicit_hash_key_index = 2; bytes data = 3; repeated Tag tags = 4}}, then the MD5 of the
 * protobuf. Written by hand (as connectors/kinesis_agg.py does in Python): the message is
 * tiny, and the connector's shaded copy of KPL's generated classes is an internal of the
 * connector that may move with any upgrade.
 *
 * <p>Reading never fails: bytes that are not a valid aggregate (no magic, bad MD5,
 * unparseable) are one user record, handed on as received like KCL does, so the validation
 * rules dead-letter them with a reason and the job keeps running.
 */
public final class KinesisAggregation {
    static final byte[] MAGIC = {(byte) 0xF3, (byte) 0x89, (byte) 0x9A, (byte) 0xC2};
    static final int DIGEST_BYTES = 16;

    private KinesisAggregation() {}

    /** One user record: its partition key and data. */
    public static final class UserRecord {
        public final String partitionKey;
        public final byte[] data;

        UserRecord(String partitionKey, byte[] data) {
            this.partitionKey = partitionKey;
            this.data = data;
        }
    }

    /** Bytes of the fixed part of an aggregate of {@code partitionKey}, key itself included
     * (Kinesis counts it against the record limit). */
    public static int fixedSize(byte[] partitionKey) {
        return MAGIC.length + fieldSize(partitionKey.length) + DIGEST_BYTES + partitionKey.length;
    }

    /** Bytes one user record of {@code dataLength} bytes adds to an aggregate. */
    public static int memberSize(int dataLength) {
        return fieldSize(2 + fieldSize(dataLength));
    }

    private static int fieldSize(int length) {
        return 1 + varintSize(length) + length;
    }

    private static int varintSize(long value) {
        int size = 1;
        while ((value >>>= 7) != 0) {
            size++;
        }
        return size;
    }

    /** One aggregated record carrying {@code records}, all under {@code partitionKey}. */
    public static byte[] encode(String partitionKey, List<byte[]> records) {
        byte[] key = partitionKey.getBytes(StandardCharsets.UTF_8);
        int size = fixedSize(key) - key.length;
        for (byte[] data : records) {
            size += memberSize(data.length);
        }
        ByteArrayOutputStream out = new ByteArrayOutputStream(size);
        out.writeBytes(MAGIC);
        writeField(out, 1, key.length);
        out.writeBytes(key);
        for (byte[] data : records) {
            writeField(out, 3, 2 + fieldSize(data.length));
            out.write(0x08); // partition_key_index = 0: required in KPL's proto2 schema
            out.write(0x00);
            writeField(out, 3, data.length);
            out.writeBytes(data);
        }
        byte[] message = out.toByteArray();
        byte[] digest = md5(message, MAGIC.length, message.length - MAGIC.length);
        byte[] record = Arrays.copyOf(message, message.length + DIGEST_BYTES);
        System.arraycopy(digest, 0, record, message.length, DIGEST_BYTES);
        return record;
    }

    private static void writeField(ByteArrayOutputStream out, int number, int length) {
        writeVarint(out, number << 3 | 2);
        writeVarint(out, length);
    }

    private static void writeVarint(ByteArrayOutputStream out, long value) {
        while ((value & ~0x7FL) != 0) {
            out.write((int) (value & 0x7F) | 0x80);
            value >>>= 7;
        }
        out.write((int) value);
    }

    /** Whether {@code data} starts like an aggregate (it may still be corrupt). */
    public static boolean isAggregated(byte[] data) {
        if (data.length < MAGIC.length + DIGEST_BYTES) {
            return false;
        }
        for (int i = 0; i < MAGIC.length; i++) {
            if (data[i] != MAGIC[i]) {
                return false;
            }
        }
        return true;
    }

    /**
     * The user records one Kinesis record carries: the members of a valid aggregate, else
     * the record itself.
     */
    public static List<UserRecord> userRecords(String partitionKey, byte[] data) {
        if (isAggregated(data)) {
            int end = data.length - DIGEST_BYTES;
            byte[] digest = md5(data, MAGIC.length, end - MAGIC.length);
            if (Arrays.equals(digest, 0, DIGEST_BYTES, data, end, data.length)) {
                try {
                    return decode(data, MAGIC.length, end);
                } catch (IllegalArgumentException corrupt) {
                    // handed on as received below
                }
            }
        }
        List<UserRecord> one = new ArrayList<>(1);
        one.add(new UserRecord(partitionKey, data));
        return one;
    }

    private static List<UserRecord> decode(byte[] buffer, int from, int end) {
        List<String> keys = new ArrayList<>(1);
        List<long[]> members = new ArrayList<>(); // {partition key index, data offset, length}
        Reader message = new Reader(buffer, from, end);
        while (message.more()) {
            long tag = message.varint();
            int number = (int) (tag >>> 3);
            int wire = (int) (tag & 7);
            if (number == 1 && wire == 2) {
                int length = message.length();
                keys.add(new String(buffer, message.position, length, StandardCharsets.UTF_8));
                message.position += length;
            } else if (number == 3 && wire == 2) {
                int length = message.length();
                members.add(member(new Reader(buffer, message.position, message.position + length)));
                message.position += length;
            } else {
                message.skip(wire);
            }
        }
        if (members.isEmpty()) {
            throw new IllegalArgumentException("aggregate without records");
        }
        List<UserRecord> records = new ArrayList<>(members.size());
        for (long[] member : members) {
            if (member[0] < 0 || member[0] >= keys.size()) {
                throw new IllegalArgumentException("partition key index out of range");
            }
            records.add(new UserRecord(keys.get((int) member[0]),
                    Arrays.copyOfRange(buffer, (int) member[1], (int) (member[1] + member[2]))));
        }
        return records;
    }

    private static long[] member(Reader record) {
        long index = -1;
        long offset = record.position;
        long length = 0;
        while (record.more()) {
            long tag = record.varint();
            int number = (int) (tag >>> 3);
            int wire = (int) (tag & 7);
            if (number == 1 && wire == 0) {
                index = record.varint();
            } else if (number == 3 && wire == 2) {
                length = record.length();
                offset = record.position;
                record.position += (int) length;
            } else {
                record.skip(wire);
            }
        }
        return new long[] {index, offset, length};
    }

    /** A protobuf reader over {@code buffer[position, end)}; any overrun is corruption. */
    private static final class Reader {
        final byte[] buffer;
        int position;
        final int end;

        Reader(byte[] buffer, int position, int end) {
            this.buffer = buffer;
            this.position = position;
            this.end = end;
        }

        boolean more() {
            return position < end;
        }

        long varint() {
            long value = 0;
            for (int shift = 0; shift < 64; shift += 7) {
                if (position >= end) {
                    throw new IllegalArgumentException("varint cut short");
                }
                byte b = buffer[position++];
                value |= (long) (b & 0x7F) << shift;
                if ((b & 0x80) == 0) {
                    return value;
                }
            }
            throw new IllegalArgumentException("varint too long");
        }

        int length() {
            long length = varint();
            if (length < 0 || length > end - position) {
                throw new IllegalArgumentException("field cut short");
            }
            return (int) length;
        }

        void skip(int wire) {
            if (wire == 0) {
                varint();
            } else if (wire == 1) {
                advance(8);
            } else if (wire == 2) {
                advance(length());
            } else if (wire == 5) {
                advance(4);
            } else {
                throw new IllegalArgumentException("wire type " + wire);
            }
        }

        private void advance(int bytes) {
            if (bytes > end - position) {
                throw new IllegalArgumentException("field cut short");
            }
            position += bytes;
        }
    }

    private static byte[] md5(byte[] bytes, int offset, int length) {
        try {
            MessageDigest md5 = MessageDigest.getInstance("MD5");
            md5.update(bytes, offset, length);
            return md5.digest();
        } catch (NoSuchAlgorithmException impossible) {
            throw new IllegalStateException("every JVM has MD5", impossible);
        }
    }
}
