package pizzastream.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.function.Function;
import org.junit.jupiter.api.Test;
import redis.clients.jedis.BuilderFactory;
import redis.clients.jedis.Jedis;
import redis.clients.jedis.PipelineBase;
import redis.clients.jedis.Protocol;
import redis.clients.jedis.Response;
import redis.clients.jedis.UnifiedJedis;
import redis.clients.jedis.exceptions.JedisClusterOperationException;
import redis.clients.jedis.exceptions.JedisConnectionException;
import redis.clients.jedis.exceptions.JedisDataException;

/**
 * What the sender counts as a connection failure or a transient error reply (sent again) and
 * what as an error reply (fails at once), for the cases a single redis-server cannot show: a
 * cluster node that never answered, a cluster that could not be reached, and a failover: a
 * batch sent to a replica (READONLY) lands once the replica is promoted, each attempt on a new
 * connection, and fails naming READONLY if it is not promoted within the budget; a cluster
 * batch answered MOVED (its slot moved to another node) lands there, sent by a new client.
 * The sending itself runs against a redis-server in RedisSinkTest and OrderStatusGateTest.
 */
class RedisBatchSenderTest {

    @Test
    void aReplyAClusterNodeNeverSentIsAConnectionFailure() {
        Response<String> unanswered = new Response<>(BuilderFactory.STRING);
        JedisConnectionException failed = assertThrows(JedisConnectionException.class,
                () -> RedisBatchSender.reply(unanswered));
        assertTrue(RedisBatchSender.isConnectionFailure(failed));
    }

    @Test
    void anErrorReplyIsThrownAsRedisSentIt() {
        Response<String> refused = new Response<>(BuilderFactory.STRING);
        refused.set(new JedisDataException("WRONGTYPE Operation against a key holding the wrong"
                + " kind of value"));
        JedisDataException error = assertThrows(JedisDataException.class,
                () -> RedisBatchSender.reply(refused));
        assertFalse(RedisBatchSender.isConnectionFailure(error));

        Response<String> written = new Response<>(BuilderFactory.STRING);
        written.set("OK".getBytes(StandardCharsets.UTF_8));
        assertEquals("OK", RedisBatchSender.reply(written));
    }

    @Test
    void aClusterThatCouldNotBeReachedIsAConnectionFailure() throws Exception {
        int closed;
        try (ServerSocket free = new ServerSocket(0)) {
            closed = free.getLocalPort();
        }
        RedisEndpoint nowhere = new RedisEndpoint("127.0.0.1", closed, "", "", false, "", true, 0);
        // Jedis throws one "could not initialize the cluster's slots" exception, holding the
        // node's connection failure as a suppressed one.
        RuntimeException unreachable = assertThrows(RuntimeException.class, nowhere::connect);
        assertFalse(unreachable instanceof JedisConnectionException, unreachable.toString());
        assertTrue(RedisBatchSender.isConnectionFailure(unreachable), unreachable.toString());
    }

    @Test
    void theTransientRepliesAreTheOnesOfARestartOrAFailover() {
        for (String reply : List.of(
                "LOADING Redis is loading the dataset in memory",
                "READONLY You can't write against a read only replica.",
                "READONLY You can't write against a read only replica. script: 941ddf4d, on"
                        + " @user_script:1.",
                "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
                "CLUSTERDOWN The cluster is down",
                "TRYAGAIN Multiple keys request during rehashing of slot",
                "MOVED 3999 127.0.0.1:6381",
                "ASK 3999 127.0.0.1:6381")) {
            assertTrue(RedisBatchSender.isTransientReply(reply), reply);
            assertEquals(reply, RedisBatchSender.transientReply(new JedisDataException(reply)));
        }
        for (String reply : List.of(
                "WRONGTYPE Operation against a key holding the wrong kind of value",
                "ERR unknown command 'SETT'",
                "NOSCRIPT No matching script. Please use EVAL.",
                "OOM command not allowed when used memory > 'maxmemory'.",
                "BUSY Redis is busy running a script.",
                "NOAUTH Authentication required.",
                "READONLYISH not a code of ours",
                "ERR READONLY is not the code")) {
            assertFalse(RedisBatchSender.isTransientReply(reply), reply);
            assertEquals(null, RedisBatchSender.transientReply(new JedisDataException(reply)));
        }
        // A cluster client whose node was loading: one "could not initialize the cluster's
        // slots" exception, holding the node's reply as a suppressed one.
        JedisClusterOperationException loading = new JedisClusterOperationException(
                "Could not initialize cluster slots cache.");
        loading.addSuppressed(
                new JedisDataException("LOADING Redis is loading the dataset in memory"));
        assertEquals("LOADING Redis is loading the dataset in memory",
                RedisBatchSender.transientReply(loading));
        assertFalse(RedisBatchSender.isConnectionFailure(loading));
    }

    /** One attempt of a batch of one SET: the id of the connection it went on, then the SET's
     * reply (as the writers read their replies). */
    private static String setOn(UnifiedJedis client, List<Long> connections) {
        PipelineBase pipeline = client.pipelined();
        Response<Object> id = pipeline.sendCommand(Protocol.Command.CLIENT, "ID");
        Response<String> set = pipeline.set("order:A", "accepted");
        pipeline.close();
        connections.add((Long) RedisBatchSender.reply(id));
        return RedisBatchSender.reply(set);
    }

    @Test
    void aBatchSentToAReplicaLandsOnceItIsPromotedEachAttemptOnANewConnection() throws Exception {
        try (RedisTestServer primary = new RedisTestServer();
             RedisTestServer replica = new RedisTestServer();
             RedisBatchSender sender = new RedisBatchSender(replica.endpoint(10), "write")) {
            replica.replicaOf(primary);     // the endpoint names the primary of before a failover
            List<Long> connections = new ArrayList<>();
            Thread failover = replica.promoteLater(1000);
            long start = System.nanoTime();
            assertEquals("OK", sender.send(1, client -> setOn(client, connections)));
            assertTrue(System.nanoTime() - start >= 1_000_000_000L);
            failover.join();
            try (Jedis redis = replica.client()) {
                assertEquals("accepted", redis.get("order:A"));
            }
            // READONLY, sent again: pauses of 100, 200, 400 ms... within the second before
            // the promotion; every attempt connected afresh.
            assertTrue(connections.size() >= 4, connections.toString());
            assertEquals(connections.size(), new HashSet<>(connections).size(),
                    connections.toString());
        }
    }

    @Test
    void aReplicaNotPromotedWithinTheBudgetFailsTheBatchNamingItsReply() throws Exception {
        try (RedisTestServer primary = new RedisTestServer();
             RedisTestServer replica = new RedisTestServer();
             RedisBatchSender sender = new RedisBatchSender(replica.endpoint(1), "write")) {
            replica.replicaOf(primary);
            List<Long> connections = new ArrayList<>();
            long start = System.nanoTime();
            IOException failed = assertThrows(IOException.class,
                    () -> sender.send(1, client -> setOn(client, connections)));
            long took = System.nanoTime() - start;
            assertTrue(took >= 1_000_000_000L && took < 5_000_000_000L, took + " ns");
            String message = failed.getMessage();
            assertEquals("Redis write failed (" + connections.size() + " attempts in 1 s), the"
                    + " last answered \"READONLY You can't write against a read only replica.\";"
                    + " the job restarts from its checkpoint", message);
            assertTrue(connections.size() >= 4, message);
            assertTrue(failed.getCause() instanceof JedisDataException, failed.toString());
            try (Jedis redis = primary.client()) {
                assertEquals(null, redis.get("order:A"));
            }
        }
    }

    /** A cluster of nodes {@code a} (every slot) and {@code b} (none), once both see it. */
    private static void formCluster(RedisTestServer a, RedisTestServer b) throws Exception {
        try (Jedis ja = a.client(); Jedis jb = b.client()) {
            ja.clusterAddSlotsRange(0, 16383);
            ja.sendCommand(Protocol.Command.CLUSTER, "MEET", "127.0.0.1",
                    Integer.toString(b.port), Integer.toString(b.busPort));
            long deadline = System.nanoTime() + 20_000_000_000L;
            while (!(ja.clusterInfo().contains("cluster_state:ok")
                    && jb.clusterInfo().contains("cluster_state:ok")
                    && ja.clusterInfo().contains("cluster_known_nodes:2")
                    && jb.clusterInfo().contains("cluster_known_nodes:2"))) {
                assertTrue(System.nanoTime() < deadline, jb.clusterInfo());
                Thread.sleep(100);
            }
        }
    }

    @Test
    void aClusterBatchAnsweredMovedLandsOnTheSlotsNewNode() throws Exception {
        try (RedisTestServer a = RedisTestServer.clusterNode();
             RedisTestServer b = RedisTestServer.clusterNode();
             RedisBatchSender sender = new RedisBatchSender(a.clusterEndpoint(10), "write")) {
            formCluster(a, b);
            List<String> attempts = new ArrayList<>();
            Function<String, Function<UnifiedJedis, String>> set = key -> client -> {
                attempts.add(key);
                PipelineBase pipeline = client.pipelined();
                Response<String> reply = pipeline.set(key, "accepted");
                pipeline.close();
                return RedisBatchSender.reply(reply);
            };
            assertEquals("OK", sender.send(1, set.apply("order:A")));   // learns: all on a
            // The slot of order:M moves to b (as a resharding or a failover moves it), the
            // sender's client still sending it to a, which answers MOVED.
            try (Jedis ja = a.client(); Jedis jb = b.client()) {
                int slot = (int) ja.clusterKeySlot("order:M");
                assertTrue(slot != (int) ja.clusterKeySlot("order:A"));
                jb.clusterSetSlotImporting(slot, ja.clusterMyId());
                ja.clusterSetSlotMigrating(slot, jb.clusterMyId());
                jb.clusterSetSlotNode(slot, jb.clusterMyId());
                ja.clusterSetSlotNode(slot, jb.clusterMyId());
                JedisDataException moved = assertThrows(JedisDataException.class,
                        () -> ja.set("order:M", "accepted"));
                assertTrue(moved.getMessage().startsWith("MOVED " + slot + " "),
                        moved.getMessage());
            }
            attempts.clear();
            assertEquals("OK", sender.send(1, set.apply("order:M")));
            assertEquals(2, attempts.size(), attempts.toString());    // MOVED, then the new client
            try (Jedis jb = b.client()) {
                assertEquals("accepted", jb.get("order:M"));
            }
        }
    }
}
