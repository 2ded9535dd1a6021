package pizzastream.flink;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.types.Row;
import redis.clients.jedis.PipelineBase;
import redis.clients.jedis.Response;
import redis.clients.jedis.UnifiedJedis;
import redis.clients.jedis.params.SetParams;

/**
 * Writes {@code Row(command, key, field, value)} to Redis for the application's hot reads.
 *
 * <p>Commands are {@code SET key value} and {@code HSET key field value}; both overwrite, so
 * the replay after a restart (at-least-once: pending writes are flushed on every checkpoint)
 * leaves the same values. Writes are pipelined in batches: one round trip per batch, not per
 * record. Keys expire after {@code ttlSeconds} when it is positive.
 *
 * <p>Connects as {@link RedisEndpoint} describes. Every reply of a pipeline is checked:
 * an error reply (a refused write, a key of another type, out of memory) fails the flush, so
 * the job restarts from its checkpoint and writes again rather than losing the update.
 *
 * <p>On a Redis cluster a batch holds keys of many slots (rows of
 * many stores); its pipeline sends each node its own commands, and each node's replies are
 * checked as above. A node that does not answer leaves its replies unset, and a key that moved
 * (resharding, failover) comes back as a MOVED error: both fail the flush, and the restarted
 * job reads the cluster's slots afresh.
 *
 * <p>Shaped as every sink of the project ({@link CheckpointFlushedSink}): a batch is sent
 * every {@code batchSize} rows and on every checkpoint.
 */
public final class RedisSink extends CheckpointFlushedSink<Row> {
    private static final long serialVersionUID = 1L;

    private final RedisEndpoint endpoint;
    private final long ttlSeconds;

    public RedisSink(RedisEndpoint endpoint, long ttlSeconds, int batchSize) {
        super(batchSize, 0);
        this.endpoint = endpoint;
        this.ttlSeconds = ttlSeconds;
    }

    @Override
    protected Buffer<Row> newBuffer() {
        return new Pipeline();
    }

    private final class Pipeline implements Buffer<Row> {
        private UnifiedJedis redis;
        /** The batch being written (opened at its first row), and its replies to check. */
        private PipelineBase pipeline;
        private final List<Response<?>> replies = new ArrayList<>();
        private int rows;

        @Override
        public void setup(int subtask) throws IOException {
            redis = endpoint.connect();
        }

        @Override
        public int write(Row row) throws IOException {
            String command = String.valueOf(row.getField(0));
            String key = String.valueOf(row.getField(1));
            String value = String.valueOf(row.getField(3));
            if (!command.equals("SET") && !command.equals("HSET")) {
                throw new IOException("unsupported Redis command " + command);
            }
            if (pipeline == null) {
                pipeline = redis.pipelined();
            }
            if (command.equals("SET")) {
                replies.add(pipeline.set(key, value, ttlSeconds > 0 ? SetParams.setParams().ex(ttlSeconds) : new SetParams()));
            } else {
                replies.add(pipeline.hset(key, String.valueOf(row.getField(2)), value));
                if (ttlSeconds > 0) {
                    replies.add(pipeline.expire(key, ttlSeconds));
                }
            }
            return ++rows;
        }

        @Override
        public void flush() throws IOException {
            PipelineBase batch = pipeline;
            pipeline = null;
            rows = 0;
            try {
                // Closing syncs, and hands the batch's connections back (a cluster pipeline's
                // cannot take another batch after its sync).
                batch.close();
            } catch (RuntimeException e) {
                replies.clear();
                throw new IOException("Redis write failed; the job restarts from its checkpoint", e);
            }
            // Error replies are not thrown by the sync: each one is thrown by its own get(), as
            // is a reply a cluster node never sent (its connection failed).
            try {
                for (Response<?> reply : replies) {
                    reply.get();
                }
            } catch (RuntimeException e) {
                throw new IOException("Redis refused a write (" + e.getMessage()
                        + "); the job restarts from its checkpoint", e);
            } finally {
                replies.clear();
            }
        }

        @Override
        public void close() {
            redis.close();
        }
    }
}
