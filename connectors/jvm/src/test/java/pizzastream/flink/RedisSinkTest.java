package pizzastream.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.util.Map;
import java.util.Set;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import redis.clients.jedis.Jedis;

/**
 * The Redis sink's batches against a redis-server of the test's own: a Redis restart within
 * {@code writeRetrySeconds} is ridden out (the connection cut, then LOADING while the server
 * loads its dataset), a longer outage and an error reply fail the flush
 * (the job restarts from its checkpoint). Its writes over TLS with AUTH, in a job, are
 * tests/connectors/test_redis_store.py's.
 */
class RedisSinkTest {
    private RedisTestServer server;
    private CheckpointFlushedSink.Buffer<Row> buffer;

    @BeforeEach
    void startRedis() throws Exception {
        server = new RedisTestServer();
    }

    @AfterEach
    void stopRedis() throws Exception {
        if (buffer != null) {
            buffer.close();
        }
        server.close();
    }

    private CheckpointFlushedSink.Buffer<Row> buffer(int writeRetrySeconds) throws IOException {
        buffer = new RedisSink(server.endpoint(writeRetrySeconds), 600, 100).newBuffer();
        buffer.setup(0);
        return buffer;
    }

    private static long secondsSince(long startNanos) {
        return (System.nanoTime() - startNanos) / 1_000_000_000L;
    }

    @Test
    void aBatchWrittenWhileRedisRestartsLandsOnceItIsBack() throws Exception {
        buffer(10);
        buffer.write(Row.of("SET", "order:A", "", "accepted"));
        buffer.write(Row.of("HSET", "inventory:{1}", "7", "10"));
        buffer.flush();
        buffer.write(Row.of("HSET", "inventory:{1}", "7", "9"));
        buffer.write(Row.of("HSET", "inventory:{1}", "8", "5"));
        buffer.write(Row.of("SET", "order:B", "", "rejected:insufficient_inventory"));
        server.stop();                  // the writer's connection is cut, the data kept
        Thread back = server.startLater(1500);
        long start = System.nanoTime();
        buffer.flush();                 // waits for Redis instead of failing
        assertTrue(System.nanoTime() - start >= 1_000_000_000L);
        back.join();
        try (Jedis redis = server.client()) {
            assertEquals(Set.of("order:A", "order:B", "inventory:{1}"), redis.keys("*"));
            assertEquals("accepted", redis.get("order:A"));
            assertEquals("rejected:insufficient_inventory", redis.get("order:B"));
            assertEquals(Map.of("7", "9", "8", "5"), redis.hgetAll("inventory:{1}"));
            assertTrue(redis.ttl("inventory:{1}") > 0 && redis.ttl("order:B") > 0);
        }
        buffer.write(Row.of("SET", "order:C", "", "accepted"));   // the writer goes on
        buffer.flush();
        try (Jedis redis = server.client()) {
            assertEquals("accepted", redis.get("order:C"));
        }
    }

    @Test
    void aBatchWrittenWhileRedisLoadsItsDatasetLandsOnceItIsLoaded() throws Exception {
        try (Jedis redis = server.client()) {
            redis.eval("for i = 1, 10000 do redis.call('SET', 'old:' .. i, i) end", 0);
        }
        buffer(10);
        buffer.write(Row.of("SET", "order:A", "", "accepted"));
        buffer.flush();
        buffer.write(Row.of("SET", "order:A", "", "rejected:insufficient_inventory"));
        buffer.write(Row.of("HSET", "inventory:{1}", "7", "9"));
        server.stop();
        server.startLoading(100);       // answers LOADING for about 2 s
        buffer.flush();                 // waits for the dataset instead of failing
        try (Jedis redis = server.client()) {
            assertEquals(10_002L, redis.dbSize());
            assertEquals("rejected:insufficient_inventory", redis.get("order:A"));
            assertEquals(Map.of("7", "9"), redis.hgetAll("inventory:{1}"));
            assertTrue(redis.ttl("inventory:{1}") > 0 && redis.ttl("order:A") > 0);
        }
    }

    @Test
    void withoutABudgetLoadingFailsTheFlushNamingIt() throws Exception {
        try (Jedis redis = server.client()) {
            redis.eval("for i = 1, 10000 do redis.call('SET', 'old:' .. i, i) end", 0);
        }
        buffer(0);
        buffer.write(Row.of("SET", "order:A", "", "accepted"));
        server.stop();
        server.startLoading(100);
        IOException failed = assertThrows(IOException.class, buffer::flush);
        assertEquals("Redis write failed (1 attempt in 0 s), the last answered \"LOADING Redis is"
                + " loading the dataset in memory\"; the job restarts from its checkpoint",
                failed.getMessage());
    }

    /** A flush of one write with Redis down for good, with the given budget: what it threw,
     * and after how many whole seconds. */
    private Object[] flushWhileRedisIsDown(int writeRetrySeconds) throws Exception {
        buffer(writeRetrySeconds);
        buffer.write(Row.of("SET", "order:A", "", "accepted"));
        server.stop();
        long start = System.nanoTime();
        IOException failed = assertThrows(IOException.class, buffer::flush);
        long took = secondsSince(start);
        server.start();
        assertTrue(failed.getMessage().endsWith("; the job restarts from its checkpoint"),
                failed.getMessage());
        assertTrue(RedisBatchSender.isConnectionFailure(failed.getCause()));
        return new Object[] {failed.getMessage(), took};
    }

    @Test
    void anOutageLongerThanTheBudgetFailsTheFlush() throws Exception {
        Object[] failed = flushWhileRedisIsDown(2);
        long took = (Long) failed[1];
        assertTrue(took >= 2 && took < 10, took + " s");
        // Pauses of 100, 200, 400, 800 ms, then what is left of the 2 s: six attempts (one
        // more if the sixth starts a moment before the end); a fixed 100 ms would make 20.
        Matcher attempts = Pattern.compile("^Redis write failed \\((\\d+) attempts in 2 s\\)")
                .matcher(String.valueOf(failed[0]));
        assertTrue(attempts.find(), failed[0] + "");
        int n = Integer.parseInt(attempts.group(1));
        assertTrue(n >= 5 && n <= 7, failed[0] + "");
    }

    @Test
    void withoutABudgetTheFirstConnectionFailureFailsTheFlush() throws Exception {
        Object[] failed = flushWhileRedisIsDown(0);
        assertEquals(0L, failed[1]);
        assertTrue(String.valueOf(failed[0]).startsWith("Redis write failed (1 attempt in 0 s)"),
                failed[0] + "");
    }

    @Test
    void anErrorReplyFailsTheFlushAtOnce() throws Exception {
        try (Jedis redis = server.client()) {
            redis.set("inventory:{2}", "not a hash");
        }
        buffer(30);
        buffer.write(Row.of("SET", "order:A", "", "accepted"));
        buffer.write(Row.of("HSET", "inventory:{2}", "7", "10"));
        long start = System.nanoTime();
        IOException refused = assertThrows(IOException.class, buffer::flush);
        assertTrue(System.nanoTime() - start < 1_000_000_000L);
        assertTrue(refused.getMessage().startsWith("Redis refused a write (WRONGTYPE"),
                refused.getMessage());
        try (Jedis redis = server.client()) {
            assertEquals("accepted", redis.get("order:A"));
            assertEquals("not a hash", redis.get("inventory:{2}"));
        }
    }
}
