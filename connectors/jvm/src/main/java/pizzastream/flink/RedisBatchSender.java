package pizzastream.flink;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.util.List;
import java.util.function.Function;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import redis.clients.jedis.Response;
import redis.clients.jedis.UnifiedJedis;
import redis.clients.jedis.exceptions.JedisConnectionException;
import redis.clients.jedis.exceptions.JedisDataException;

/**
 * A Redis writer's connection ({@link RedisSink}, {@link OrderStatusGate}), which sends each
 * batch of writes again when the connection fails or Redis answers that it cannot take them
 * yet, so that a Redis restart or failover of a few seconds does not restart the job (each
 * restart replays from the checkpoint, and restarts in quick succession have crashed a
 * TaskManager's RocksDB, docs/failures.md).
 *
 * <p>A <em>connection failure</em> is the server unreachable or the connection dropped
 * (Jedis' {@link JedisConnectionException}, also when connecting to a cluster), or a reply a
 * cluster node never sent (its connection failed during the pipeline's sync). A
 * <em>transient error reply</em> is one of the {@link #TRANSIENT_REPLIES}, the replies Redis
 * gives while a restart or a failover is under way: {@code LOADING} (the server is loading its
 * dataset: started again, or a replica's full sync), {@code READONLY} (the write reached a
 * replica: the demoted primary, still at the end of a connection, or of a DNS name, after a
 * failover; or a replica not yet promoted), {@code MASTERDOWN}
 * (a replica lost its primary, with {@code replica-serve-stale-data no}), {@code CLUSTERDOWN}
 * (a cluster without a primary for some slot while it fails over), {@code TRYAGAIN} (a
 * cluster's slot migrating), and on a cluster {@code MOVED} and {@code ASK}: Jedis follows
 * those for a single command, but a pipeline hands them back as replies, so a cluster client
 * still holding the slots of before the failover (the demoted primary answers MOVED) or a
 * resharding would fail the batch. On either kind, the client is closed (its connections, and a
 * cluster client's slots, may point at the old primary), and after a pause (100 ms, doubling
 * up to 2 s) a new client, connecting afresh (and reading a cluster's slots afresh), sends the
 * whole batch again, until {@link RedisEndpoint#writeRetrySeconds()} have passed since the
 * batch's first attempt: the last attempt starts at the latest then, and if it fails too the
 * batch fails with an {@link IOException} (the task fails, the job restarts from its
 * checkpoint) naming the last error reply, if it was one. Each retry is logged at WARN with
 * its cause. The caller's writes must be safe to apply twice, as they must be for a restart's
 * replay: part of a batch may have landed before the connection dropped or the error reply
 * came (every write of {@link RedisSink} overwrites; {@link OrderStatusGate}'s script answers
 * a write it applied before as a replay).
 *
 * <p>Every other <em>error reply</em> (Redis refused a command: a key of another type, out of
 * memory, a script error, a refused AUTH) is not retried: the batch fails at once, as sending
 * it again would be refused again; a restart from the checkpoint and a write again is the way
 * to make it land. ({@code NOSCRIPT} never reaches the sender: {@link OrderStatusGate} answers
 * it by sending those writes again as EVAL, as it must after a failover too, the new primary
 * not having the script.)
 *
 * <p>Connects at the first batch, not before, so a writer opened while Redis is down waits
 * for it as a batch does.
 */
final class RedisBatchSender implements AutoCloseable {
    private static final Logger LOG = LoggerFactory.getLogger(RedisBatchSender.class);

    static final long FIRST_PAUSE_MS = 100;
    static final long LONGEST_PAUSE_MS = 2000;

    /**
     * The error codes (the first word of an error reply) sent again as a connection failure
     * is: Redis answers them while a restart or failover is under way (see above), and every
     * write of the callers is safe to send twice.
     */
    static final List<String> TRANSIENT_REPLIES =
            List.of("LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "MOVED", "ASK");

    private final RedisEndpoint endpoint;
    /** What the batches write, for messages ("write", "status write"). */
    private final String writes;
    private UnifiedJedis redis;

    RedisBatchSender(RedisEndpoint endpoint, String writes) {
        this.endpoint = endpoint;
        this.writes = writes;
    }

    /**
     * Sends a batch of {@code size} writes: {@code batch} pipelines them on the client it is
     * given, syncs, and reads the replies with {@link #reply}; it runs again after a
     * connection failure or a transient error reply, as above. Returns what {@code batch}
     * returns.
     */
    <T> T send(int size, Function<UnifiedJedis, T> batch) throws IOException {
        long budgetNanos = endpoint.writeRetrySeconds() * 1_000_000_000L;
        long start = System.nanoTime();
        long pause = FIRST_PAUSE_MS;
        for (int attempt = 1; ; attempt++) {
            try {
                if (redis == null) {
                    redis = endpoint.connect();
                }
                return batch.apply(redis);
            } catch (RuntimeException e) {
                String transientReply = transientReply(e);
                if (transientReply == null && !isConnectionFailure(e)) {
                    if (e instanceof JedisDataException) {
                        throw new IOException("Redis refused a " + writes + " (" + e.getMessage()
                                + "); the job restarts from its checkpoint", e);
                    }
                    throw new IOException("Redis " + writes + " failed; the job restarts from its"
                            + " checkpoint", e);
                }
                disconnect();
                long leftMs = (budgetNanos - (System.nanoTime() - start)) / 1_000_000;
                if (leftMs <= 0) {
                    throw new IOException("Redis " + writes + " failed (" + attempt
                            + (attempt == 1 ? " attempt" : " attempts") + " in "
                            + endpoint.writeRetrySeconds() + " s)"
                            + (transientReply == null ? "" : ", the last answered \""
                                    + transientReply + "\"")
                            + "; the job restarts from its checkpoint", e);
                }
                long wait = Math.min(pause, leftMs);
                LOG.warn("{}, a batch of {} {}s not confirmed (attempt {}: {});"
                                + " sending it again in {} ms, {} ms of the {} s retry budget left",
                        transientReply == null ? "Redis unreachable" : "Redis not writable now",
                        size, writes, attempt, causes(e), wait, leftMs,
                        endpoint.writeRetrySeconds());
                try {
                    Thread.sleep(wait);
                } catch (InterruptedException interrupted) {
                    Thread.currentThread().interrupt();
                    InterruptedIOException stop = new InterruptedIOException(
                            "interrupted while waiting to send a Redis batch again");
                    stop.initCause(e);
                    throw stop;
                }
                pause = Math.min(2 * pause, LONGEST_PAUSE_MS);
            }
        }
    }

    /**
     * A reply of a synced pipeline: its value, or the error reply thrown as Jedis throws it
     * ({@link JedisDataException}); a reply that was never set (a cluster node's connection
     * failed during the sync: Jedis logs it and leaves that node's replies unset) is thrown as
     * the connection failure it is.
     */
    static <T> T reply(Response<T> response) {
        try {
            return response.get();
        } catch (IllegalStateException e) {
            throw new JedisConnectionException("no reply from the Redis node (its connection"
                    + " failed)", e);
        }
    }

    /** A {@link JedisConnectionException} among the causes (or suppressed: a cluster client
     * that reached no node throws one exception holding the first node's failure). */
    static boolean isConnectionFailure(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof JedisConnectionException) {
                return true;
            }
            for (Throwable suppressed : t.getSuppressed()) {
                if (isConnectionFailure(suppressed)) {
                    return true;
                }
            }
        }
        return false;
    }

    /** The first transient error reply ({@link #TRANSIENT_REPLIES}) among the causes (or
     * suppressed, as above: a cluster client whose node answered LOADING to CLUSTER SLOTS),
     * as Redis sent it; null if there is none. */
    static String transientReply(Throwable e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof JedisDataException && isTransientReply(t.getMessage())) {
                return t.getMessage();
            }
            for (Throwable suppressed : t.getSuppressed()) {
                String reply = transientReply(suppressed);
                if (reply != null) {
                    return reply;
                }
            }
        }
        return null;
    }

    /** Whether an error reply's code (its first word) is one of {@link #TRANSIENT_REPLIES}. */
    static boolean isTransientReply(String reply) {
        if (reply == null) {
            return false;
        }
        int space = reply.indexOf(' ');
        return TRANSIENT_REPLIES.contains(space < 0 ? reply : reply.substring(0, space));
    }

    private static String causes(Throwable e) {
        StringBuilder text = new StringBuilder(String.valueOf(e));
        for (Throwable t = e.getCause(); t != null; t = t.getCause()) {
            text.append(" <- ").append(t);
        }
        return text.toString();
    }

    private void disconnect() {
        if (redis != null) {
            try {
                redis.close();
            } catch (RuntimeException e) {
                LOG.debug("closing a failed Redis client", e);
            }
            redis = null;
        }
    }

    @Override
    public void close() {
        disconnect();
    }
}
