package pizzastream.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import org.junit.jupiter.api.Test;
import redis.clients.jedis.BuilderFactory;
import redis.clients.jedis.Response;
import redis.clients.jedis.exceptions.JedisConnectionException;
import redis.clients.jedis.exceptions.JedisDataException;

/**
 * What the sender counts as a connection failure (sent again) and what as an error reply
 * (fails at once), for the cases a single redis-server cannot show: a cluster node that
 * never answered, a cluster that could not be reached. The sending itself runs against a
 * redis-server in RedisSinkTest and OrderStatusGateTest.
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
}
