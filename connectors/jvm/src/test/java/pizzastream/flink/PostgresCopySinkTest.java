package pizzastream.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

/** The statements a batch is written with; the writes themselves run against PostgreSQL in
 * tests/connectors/test_aurora_copy_sink.py. */
class PostgresCopySinkTest {

    private static PostgresCopySink sink(boolean updatesExpected) {
        return new PostgresCopySink("jdbc:postgresql://localhost/x", "u", "p", "inventory",
                new String[] {"store_id integer", "ingredient_id integer", "on_hand bigint"},
                new String[] {"store_id", "ingredient_id", "on_hand", "updated_at"},
                new String[] {"store_id", "ingredient_id", "on_hand", "now()"},
                new String[] {"store_id", "ingredient_id"}, 1000, 1000L, updatesExpected);
    }

    @Test
    void newKeysAreFirstTriedWithThePlainInsert() {
        PostgresCopySink sink = sink(false);
        assertEquals(sink.insertSql(), sink.firstSql());
        assertEquals("INSERT INTO inventory (store_id, ingredient_id, on_hand, updated_at)"
                + " SELECT store_id, ingredient_id, on_hand, now() FROM stage_inventory",
                sink.firstSql());
    }

    @Test
    void rowsRewrittenInPlaceAreMergedAtOnce() {
        PostgresCopySink sink = sink(true);
        assertEquals(sink.mergeSql(), sink.firstSql());
        assertTrue(sink.firstSql().endsWith(" ON CONFLICT (store_id, ingredient_id) DO UPDATE SET"
                + " on_hand = EXCLUDED.on_hand, updated_at = EXCLUDED.updated_at"),
                sink.firstSql());
    }

    @Test
    void theKeyMustBeWritten() {
        assertThrows(IllegalArgumentException.class, () -> new PostgresCopySink("url", "u", "p",
                "t", new String[] {"a integer"}, new String[] {"a"}, new String[] {"a"},
                new String[] {"b"}, 10, 10L, false));
    }
}
