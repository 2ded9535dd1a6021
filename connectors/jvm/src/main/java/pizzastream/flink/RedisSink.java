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
 * <p>Connects as {@link RedisEndpoint} describes, through a {@link RedisBatchSender}: when the
 * connection fails or Redis answers that it cannot take writes yet (Redis restarting, a
 * failover: LOADING, READONLY, the sender's {@code TRANSIENT_REPLIES}), the batch is kept and
 * sent again, whole, on a new connection, until the endpoint's {@code writeRetrySeconds} run
 * out; only then does the flush fail and the job restart from its checkpoint. Sending a batch
 * again is as safe as that replay: SET, HSET and EXPIRE leave the same values however often
 * they land. Every reply of a pipeline is checked: any other error reply (a refused write, a
 * key of another type, out of memory) fails the flush at once, so the job restarts from its
 * checkpoint and writes again rather than losing the update.
 *
 * <p>On a Redis cluster a batch holds keys of many slots (rows of
 * many stores); its pipeline sends each node its own commands, and each node's replies are
 * checked as above. A node that does not answer leaves its replies unset: a connection
 * failure, the batch is sent again by a new client, which reads the cluster's slots afresh. A
 * key whose slot moved (a failover, a resharding) comes back as a MOVED (or ASK) error reply,
 * which Jedis does not follow in a pipeline: the batch is sent again the same way, by a new
 * client that reads the cluster's slots afresh.
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
        private RedisBatchSender redis;
        /** The batch: {command, key, field, value} per row, kept until Redis confirmed it. */
        private final List<String[]> batch = new ArrayList<>();

        @Override
        public void setup(int subtask) {
            redis = new RedisBatchSender(endpoint, "write");
        }

        @Override
        public int write(Row row) throws IOException {
            String command = String.valueOf(row.getField(0));
            if (!command.equals("SET") && !command.equals("HSET")) {
                throw new IOException("unsupported Redis command " + command);
            }
            batch.add(new String[] {command, String.valueOf(row.getField(1)),
                    String.valueOf(row.getField(2)), String.valueOf(row.getField(3))});
            return batch.size();
        }

        @Override
        public void flush() throws IOException {
            try {
                redis.send(batch.size(), this::send);
            } finally {
                batch.clear();
            }
        }

        /** One attempt: the batch pipelined, synced, every reply checked. */
        private Void send(UnifiedJedis client) {
            List<Response<?>> replies = new ArrayList<>();
            SetParams expiring = ttlSeconds > 0 ? SetParams.setParams().ex(ttlSeconds) : new SetParams();
            PipelineBase pipeline = client.pipelined();
            for (String[] write : batch) {
                String key = write[1];
                if (write[0].equals("SET")) {
                    replies.add(pipeline.set(key, write[3], expiring));
                } else {
                    replies.add(pipeline.hset(key, write[2], write[3]));
                    if (ttlSeconds > 0) {
                        replies.add(pipeline.expire(key, ttlSeconds));
                    }
                }
            }
            // Closing syncs, and hands the batch's connections back (a cluster pipeline's
            // cannot take another batch after its sync). Error replies are not thrown by the
            // sync: each one is thrown by its own reply.
            pipeline.close();
            for (Response<?> reply : replies) {
                RedisBatchSender.reply(reply);
            }
            return null;
        }

        @Override
        public void close() {
            if (redis != null) {
                redis.close();
            }
        }
    }
}
