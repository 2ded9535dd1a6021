package pizzastream.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.util.HashSet;
import java.util.Set;
import org.apache.flink.runtime.state.KeyGroupRangeAssignment;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.Test;

class StoreShardKeyTest {
    private static final int MAX_PARALLELISM = 128;

    @Test
    void aStoreGoesToTheShardOfItsNumber() {
        StoreShardKey key = new StoreShardKey(16, MAX_PARALLELISM);
        assertEquals(7, key.shard("7"));
        assertEquals(7 % 16, key.shard("1991"));
        assertEquals(0, key.shard("0"));
        assertEquals(Row.of(key.name(7)), key.getKey(Row.of("7", "ignored")));
    }

    @Test
    void leadingZerosKeepAStoreOnItsShard() {
        StoreShardKey key = new StoreShardKey(16, MAX_PARALLELISM);
        assertEquals(key.shard("7"), key.shard("007"));
        assertEquals(key.getKey(Row.of("7")), key.getKey(Row.of("0007")));
    }

    @Test
    void aKeyThatNamesNoStoreGoesToTheShardOfItsHash() {
        StoreShardKey key = new StoreShardKey(16, MAX_PARALLELISM);
        for (String bad : new String[] {"", "store-7", "-7", "7a", " 7", "1234567890"}) {
            assertEquals(Math.floorMod(bad.hashCode(), 16), key.shard(bad), bad);
        }
        // a null partition key is the text "null", not a crash
        assertEquals(Row.of(key.name(Math.floorMod("null".hashCode(), 16))),
                key.getKey(Row.of((Object) null)));
    }

    @Test
    void shardNamesLieEvenlyOverTheKeyGroups() {
        int shards = 16;
        StoreShardKey key = new StoreShardKey(shards, MAX_PARALLELISM);
        Set<String> names = new HashSet<>();
        int[] shardsPerSubtask = new int[4];
        for (int shard = 0; shard < shards; shard++) {
            names.add(key.name(shard));
            int keyGroup = KeyGroupRangeAssignment.assignToKeyGroup(
                    Row.of(key.name(shard)), MAX_PARALLELISM);
            assertEquals(shard * MAX_PARALLELISM / shards, keyGroup, key.name(shard));
            shardsPerSubtask[KeyGroupRangeAssignment.computeOperatorIndexForKeyGroup(
                    MAX_PARALLELISM, 4, keyGroup)]++;
        }
        assertEquals(shards, names.size());
        assertEquals("[4, 4, 4, 4]", java.util.Arrays.toString(shardsPerSubtask));
    }

    @Test
    void theShardCountMustFitTheMaxParallelism() {
        assertThrows(IllegalArgumentException.class, () -> new StoreShardKey(0, MAX_PARALLELISM));
        assertThrows(IllegalArgumentException.class,
                () -> new StoreShardKey(MAX_PARALLELISM + 1, MAX_PARALLELISM));
        assertEquals(MAX_PARALLELISM - 1,
                KeyGroupRangeAssignment.assignToKeyGroup(
                        Row.of(new StoreShardKey(MAX_PARALLELISM, MAX_PARALLELISM)
                                .name(MAX_PARALLELISM - 1)), MAX_PARALLELISM));
    }
}
