package pizzastream.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.apache.flink.api.common.typeutils.TypeSerializer;
import org.apache.flink.api.common.typeutils.base.StringSerializer;
import org.apache.flink.api.java.typeutils.runtime.RowSerializer;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.streaming.util.OneInputStreamOperatorTestHarness;
import org.apache.flink.types.Row;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import redis.clients.jedis.Jedis;

/**
 * The order status gate's batches against a redis-server of the test's own, with the jobs'
 * script (connectors/redis_store.py {@code STATUS_WRITE_SCRIPT}, printed by the project's
 * Python): a batch sent again after part of it landed and the connection dropped gives the
 * dead letters and statuses of one uninterrupted send, and so does a batch sent to a replica
 * (READONLY, after NOSCRIPT) until it is promoted, as in a failover; a longer outage and an
 * error reply fail the flush. Its writes over TLS with AUTH, in a job, are
 * tests/connectors/test_redis_store.py's.
 */
class OrderStatusGateTest {
    private static final String JOB = "inventory_windowing";
    private static String script;

    private RedisTestServer server;
    private final List<OneInputStreamOperatorTestHarness<Row, Row>> harnesses = new ArrayList<>();

    /** A batch of one job's status writes, {order_id, status}: two refusals among them. */
    private static final String[][] WRITES = {
        {"A", "accepted"},
        {"B", "rejected:insufficient_inventory"},
        {"A", "rejected:insufficient_inventory"},   // A is accepted: refused
        {"C", "accepted"},
        {"D", "accepted"},                          // D is rejected:invalid before: refused
        {"B", "rejected:insufficient_inventory"},   // the same again: a replay
        {"E", "accepted"},
    };

    @BeforeAll
    static void readTheScript() throws Exception {
        Path root = Paths.get("").toAbsolutePath();
        while (!Files.exists(root.resolve("connectors/redis_store.py"))) {
            root = root.getParent();
        }
        Process python = new ProcessBuilder(root.resolve(".venv/bin/python").toString(), "-c",
                "import sys; from connectors.redis_store import STATUS_WRITE_SCRIPT as s;"
                        + " sys.stdout.write(s)")
                .directory(root.toFile())
                .redirectError(ProcessBuilder.Redirect.INHERIT)
                .start();
        script = new String(python.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        assertTrue(python.waitFor(60, TimeUnit.SECONDS) && python.exitValue() == 0);
        assertTrue(script.contains("redis.call('GET', KEYS[1])"), script);
    }

    @BeforeEach
    void startRedis() throws Exception {
        server = new RedisTestServer();
    }

    @AfterEach
    void stopRedis() throws Exception {
        for (OneInputStreamOperatorTestHarness<Row, Row> harness : harnesses) {
            harness.close();
        }
        server.close();
    }

    /** An open gate writing {@code prefix<order_id>}, whose batches wait for a checkpoint. */
    private OneInputStreamOperatorTestHarness<Row, Row> gate(String prefix, int writeRetrySeconds)
            throws Exception {
        return gate(server.endpoint(writeRetrySeconds), prefix);
    }

    private OneInputStreamOperatorTestHarness<Row, Row> gate(RedisEndpoint endpoint, String prefix)
            throws Exception {
        var harness = new OneInputStreamOperatorTestHarness<Row, Row>(new OrderStatusGate(
                endpoint, 600, 1000, 3_600_000, prefix, JOB, script));
        harnesses.add(harness);
        TypeSerializer<?>[] fields = new TypeSerializer<?>[8];
        Arrays.fill(fields, StringSerializer.INSTANCE);     // the dead letters, copied as rows
        harness.setup(new RowSerializer(fields));
        harness.open();
        return harness;
    }

    private static void send(OneInputStreamOperatorTestHarness<Row, Row> gate, String prefix)
            throws Exception {
        for (String[] write : WRITES) {
            gate.processElement(new StreamRecord<>(Row.of("SET", prefix + write[0], "", write[1])));
        }
    }

    private Map<String, String> statuses(String prefix) {
        return statuses(server, prefix);
    }

    private static Map<String, String> statuses(RedisTestServer of, String prefix) {
        Map<String, String> statuses = new LinkedHashMap<>();
        try (Jedis redis = of.client()) {
            for (String order : List.of("A", "B", "C", "D", "E")) {
                statuses.put(order, redis.get(prefix + order));
            }
        }
        return statuses;
    }

    /** The dead letters and statuses of one uninterrupted send, under {@code prefix}. */
    private List<Row> sendOnce(String prefix) throws Exception {
        try (Jedis redis = server.client()) {
            redis.set(prefix + "D", "rejected:invalid");
        }
        var gate = gate(prefix, 10);
        send(gate, prefix);
        gate.prepareSnapshotPreBarrier(1);
        return gate.extractOutputValues();
    }

    @Test
    void aBatchSentAgainAfterPartOfItLandedGivesWhatOneSendGives() throws Exception {
        List<Row> once = sendOnce("ref:");
        assertEquals(List.of(
                        new OrderStatusGate(null, 0, 1, 0, "", JOB, "")
                                .conflict("A", "rejected:insufficient_inventory", "accepted"),
                        new OrderStatusGate(null, 0, 1, 0, "", JOB, "")
                                .conflict("D", "accepted", "rejected:invalid")),
                once);
        Map<String, String> settled = statuses("ref:");
        assertEquals(Map.of("A", "accepted", "B", "rejected:insufficient_inventory",
                "C", "accepted", "D", "rejected:invalid", "E", "accepted"), settled);

        // Landed before the connection dropped: none, the first three writes (a refusal among
        // them), all of them (only the replies were lost).
        for (int landed : new int[] {0, 3, WRITES.length}) {
            String prefix = "order" + landed + ":";
            try (Jedis redis = server.client()) {
                redis.set(prefix + "D", "rejected:invalid");
                for (int i = 0; i < landed; i++) {
                    redis.eval(script, List.of(prefix + WRITES[i][0]), List.of(WRITES[i][1], "600"));
                }
            }
            var gate = gate(prefix, 10);
            gate.processElement(new StreamRecord<>(Row.of("SET", prefix + "W", "", "accepted")));
            gate.prepareSnapshotPreBarrier(0);     // connected
            send(gate, prefix);
            server.stop();              // the connection cut, the data kept, the script lost
            Thread back = server.startLater(1000);
            gate.prepareSnapshotPreBarrier(landed + 1);   // sends the batch until Redis is back
            back.join();
            assertEquals(once, gate.extractOutputValues(), "landed " + landed);
            assertEquals(settled, statuses(prefix), "landed " + landed);
        }
    }

    @Test
    void aBatchSentToAReplicaLandsOnceItIsPromotedAsOneSendWould() throws Exception {
        List<Row> once = sendOnce("ref:");
        Map<String, String> settled = statuses("ref:");
        try (Jedis redis = server.client()) {
            redis.set("order:D", "rejected:invalid");
        }
        try (RedisTestServer replica = new RedisTestServer()) {
            replica.replicaOf(server);  // the endpoint names the primary of before a failover
            var gate = gate(replica.endpoint(10), "order:");
            send(gate, "order:");
            Thread failover = replica.promoteLater(1000);
            long start = System.nanoTime();
            // EVALSHA: NOSCRIPT (a replica has no scripts); EVAL: READONLY at the first write
            // of the batch, sent again until the replica is promoted.
            gate.prepareSnapshotPreBarrier(1);
            assertTrue(System.nanoTime() - start >= 1_000_000_000L);
            failover.join();
            assertEquals(once, gate.extractOutputValues());
            assertEquals(settled, statuses(replica, "order:"));
        }
    }

    @Test
    void anOutageLongerThanTheBudgetFailsTheFlush() throws Exception {
        var gate = gate("order:", 2);
        send(gate, "order:");
        server.stop();
        long start = System.nanoTime();
        IOException failed = assertThrows(IOException.class, () -> gate.prepareSnapshotPreBarrier(1));
        long took = (System.nanoTime() - start) / 1_000_000_000L;
        assertTrue(took >= 2 && took < 10, took + " s");
        assertTrue(failed.getMessage().startsWith("Redis status write failed (")
                && failed.getMessage().endsWith("; the job restarts from its checkpoint"),
                failed.getMessage());
        server.start();
    }

    @Test
    void anErrorReplyFailsTheFlushAtOnce() throws Exception {
        try (Jedis redis = server.client()) {
            redis.hset("order:C", "not", "a status");
        }
        var gate = gate("order:", 30);
        send(gate, "order:");
        long start = System.nanoTime();
        IOException refused = assertThrows(IOException.class, () -> gate.prepareSnapshotPreBarrier(1));
        assertTrue(System.nanoTime() - start < 1_000_000_000L);
        assertTrue(refused.getMessage().startsWith("Redis refused a status write ("), refused.getMessage());
        assertTrue(refused.getMessage().contains("WRONGTYPE"), refused.getMessage());
    }
}
