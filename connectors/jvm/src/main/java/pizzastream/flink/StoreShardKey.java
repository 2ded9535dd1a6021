package pizzastream.flink;

import org.apache.flink.api.java.functions.KeySelector;
import org.apache.flink.runtime.state.KeyGroupRangeAssignment;
import org.apache.flink.types.Row;

/**
 * The store shard of a record {@code Row(partition_key, ...)}: stores are grouped into a fixed
 * number of shards, and the per-store state and micro-batches of inventory_windowing are kept
 * per shard, so one crossing into Python carries many stores' events. A store's shard never
 * changes ({@code store_id % shards}), which keeps each store's events in order and its state
 * in one place through restores and rescales; a key that names no store (bad input) goes to
 * the shard of its hash, where the rules dead-letter it.
 *
 * <p>Keys are {@code Row(name)} like PyFlink's {@code KeyByKeySelector}, so the batches can be
 * re-interpreted as keyed by the same key without a second shuffle. Each shard's name is chosen
 * so that the shards spread evenly over the key groups of {@code maxParallelism}: with shards a
 * divisor of it, every parallelism that divides the shard count gets the same number of shards
 * per subtask.
 */
public final class StoreShardKey implements KeySelector<Row, Row> {
    private static final long serialVersionUID = 1L;
    private static final int MAX_STORE_DIGITS = 9;

    private final String[] names;

    public StoreShardKey(int shards, int maxParallelism) {
        if (shards < 1 || shards > maxParallelism) {
            throw new IllegalArgumentException("shards must be 1.." + maxParallelism);
        }
        names = new String[shards];
        for (int shard = 0; shard < shards; shard++) {
            names[shard] = nameInKeyGroup(shard * maxParallelism / shards, maxParallelism);
        }
    }

    private static String nameInKeyGroup(int keyGroup, int maxParallelism) {
        for (int candidate = 0; ; candidate++) {
            String name = "shard-" + candidate;
            if (KeyGroupRangeAssignment.assignToKeyGroup(Row.of(name), maxParallelism) == keyGroup) {
                return name;
            }
        }
    }

    /** The shard key name of a store shard, for tests and tools. */
    public String name(int shard) {
        return names[shard];
    }

    @Override
    public Row getKey(Row record) {
        return Row.of(names[shard(String.valueOf(record.getField(0)))]);
    }

    int shard(String partitionKey) {
        long store = decimal(partitionKey);
        if (store >= 0) {
            return (int) (store % names.length);
        }
        return Math.floorMod(partitionKey.hashCode(), names.length);
    }

    /** The value of a key of decimal ASCII digits (leading zeros allowed: "007" is store 7's
     * shard, so its records stay in order with the store's), or -1. */
    private static long decimal(String key) {
        int length = key.length();
        if (length == 0 || length > MAX_STORE_DIGITS) {
            return -1;
        }
        long value = 0;
        for (int i = 0; i < length; i++) {
            char c = key.charAt(i);
            if (c < '0' || c > '9') {
                return -1;
            }
            value = value * 10 + (c - '0');
        }
        return value;
    }
}
