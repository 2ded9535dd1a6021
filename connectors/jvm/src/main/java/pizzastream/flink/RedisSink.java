package pizzastream.flink;

import java.io.IOException;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.types.Row;
import redis.clients.jedis.DefaultJedisClientConfig;
import redis.clients.jedis.HostAndPort;
import redis.clients.jedis.Jedis;
import redis.clients.jedis.Pipeline;
import redis.clients.jedis.params.SetParams;

/**
 * Writes {@code Row(command, key, field, value)} to Redis for the application's hot reads.
 *
 * <p>Commands are {@code SET key value} and {@code HSET key field value}; both overwrite, so
 * the replay after a restart (at-least-once: pending writes are flushed on every checkpoint)
 * leaves the same values. Writes are pipelined in batches: one round trip per batch, not per
 * record. Keys expire after {@code ttlSeconds} when it is positive.
 */
public final class RedisSink implements Sink<Row> {
    private static final long serialVersionUID = 1L;

    private final String host;
    private final int port;
    private final long ttlSeconds;
    private final int batchSize;
    private final String password;
    private final boolean tls;

    public RedisSink(String host, int port, long ttlSeconds, int batchSize) {
        this(host, port, ttlSeconds, batchSize, null, false);
    }

    /**
     * {@code password}: the AUTH token (ElastiCache with in-transit encryption), null for
     * none; {@code tls}: connect over TLS (ElastiCache's in-transit encryption).
     */
    public RedisSink(String host, int port, long ttlSeconds, int batchSize, String password,
                     boolean tls) {
        this.host = host;
        this.port = port;
        this.ttlSeconds = ttlSeconds;
        this.batchSize = batchSize;
        this.password = password;
        this.tls = tls;
    }

    @Override
    @SuppressWarnings("deprecation")
    public SinkWriter<Row> createWriter(InitContext context) {
        return new Writer();
    }

    private final class Writer implements SinkWriter<Row> {
        private final Jedis jedis = new Jedis(new HostAndPort(host, port),
                DefaultJedisClientConfig.builder().password(password).ssl(tls).build());
        private Pipeline pipeline = jedis.pipelined();
        private int pending;

        @Override
        public void write(Row row, Context context) throws IOException {
            String command = String.valueOf(row.getField(0));
            String key = String.valueOf(row.getField(1));
            String value = String.valueOf(row.getField(3));
            switch (command) {
                case "SET":
                    pipeline.set(key, value, ttlSeconds > 0 ? SetParams.setParams().ex(ttlSeconds) : new SetParams());
                    break;
                case "HSET":
                    pipeline.hset(key, String.valueOf(row.getField(2)), value);
                    if (ttlSeconds > 0) {
                        pipeline.expire(key, ttlSeconds);
                    }
                    break;
                default:
                    throw new IOException("unsupported Redis command " + command);
            }
            if (++pending >= batchSize) {
                flush(false);
            }
        }

        @Override
        public void flush(boolean endOfInput) throws IOException {
            if (pending == 0) {
                return;
            }
            try {
                pipeline.sync();
            } catch (RuntimeException e) {
                throw new IOException("Redis write failed; the job restarts from its checkpoint", e);
            }
            pipeline = jedis.pipelined();
            pending = 0;
        }

        @Override
        public void close() {
            jedis.close();
        }
    }
}
