package pizzastream.flink;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocketFactory;
import javax.net.ssl.TrustManagerFactory;
import org.apache.flink.api.connector.sink2.Sink;
import org.apache.flink.api.connector.sink2.SinkWriter;
import org.apache.flink.types.Row;
import redis.clients.jedis.DefaultJedisClientConfig;
import redis.clients.jedis.HostAndPort;
import redis.clients.jedis.JedisClientConfig;
import redis.clients.jedis.JedisCluster;
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
 * <p>Connects as ElastiCache with in-transit encryption and RBAC expects: AUTH as {@code user}
 * (the default user when empty or {@code default}: a plain {@code AUTH password}, as an
 * ElastiCache AUTH token expects) with {@code password} (no AUTH when empty), and TLS when
 * {@code tls}, the server's certificate checked against {@code caFile} (PEM; the JVM's trust
 * store when empty) and its name against {@code host}. Every reply of a pipeline is checked:
 * an error reply (a refused write, a key of another type, out of memory) fails the flush, so
 * the job restarts from its checkpoint and writes again rather than losing the update.
 *
 * <p>With {@code clusterMode} the server is a Redis cluster (ElastiCache cluster mode) whose
 * configuration endpoint is {@code host}: a {@link JedisCluster} learns the shards from it,
 * with the same AUTH and TLS for every node. A batch then holds keys of many slots (rows of
 * many stores); its pipeline sends each node its own commands, and each node's replies are
 * checked as above. A node that does not answer leaves its replies unset, and a key that moved
 * (resharding, failover) comes back as a MOVED error: both fail the flush, and the restarted
 * job reads the cluster's slots afresh.
 */
public final class RedisSink implements Sink<Row> {
    private static final long serialVersionUID = 1L;

    private final String host;
    private final int port;
    /** Redis's name of the user a plain {@code AUTH password} authenticates. */
    private static final String DEFAULT_USER = "default";

    private final String user;
    private final String password;
    private final boolean tls;
    private final String caFile;
    private final boolean clusterMode;
    private final long ttlSeconds;
    private final int batchSize;

    public RedisSink(String host, int port, String user, String password, boolean tls,
                     String caFile, boolean clusterMode, long ttlSeconds, int batchSize) {
        this.host = host;
        this.port = port;
        this.user = user;
        this.password = password;
        this.tls = tls;
        this.caFile = caFile;
        this.clusterMode = clusterMode;
        this.ttlSeconds = ttlSeconds;
        this.batchSize = batchSize;
    }

    @Override
    @SuppressWarnings("deprecation")
    public SinkWriter<Row> createWriter(InitContext context) throws IOException {
        return new Writer(connect());
    }

    private UnifiedJedis connect() throws IOException {
        return connect(host, port, user, password, tls, caFile, clusterMode);
    }

    /** A client as this sink's (AUTH, TLS, cluster mode), shared with {@link OrderStatusGate}. */
    static UnifiedJedis connect(String host, int port, String user, String password, boolean tls,
                                String caFile, boolean clusterMode) throws IOException {
        DefaultJedisClientConfig.Builder config = DefaultJedisClientConfig.builder()
                .timeoutMillis(5000);
        if (!password.isEmpty()) {
            config.user(user.isEmpty() || user.equals(DEFAULT_USER) ? null : user).password(password);
        }
        if (tls) {
            SSLParameters parameters = new SSLParameters();
            parameters.setEndpointIdentificationAlgorithm("HTTPS");
            config.ssl(true).sslParameters(parameters);
            if (!caFile.isEmpty()) {
                config.sslSocketFactory(trusting(caFile));
            }
        }
        JedisClientConfig client = config.build();
        HostAndPort address = new HostAndPort(host, port);
        return clusterMode ? new JedisCluster(Set.of(address), client) : new UnifiedJedis(address, client);
    }

    /** Socket factory trusting exactly the CA certificates in a PEM file. */
    private static SSLSocketFactory trusting(String pemFile) throws IOException {
        try (InputStream in = Files.newInputStream(Paths.get(pemFile))) {
            KeyStore trusted = KeyStore.getInstance(KeyStore.getDefaultType());
            trusted.load(null, null);
            int n = 0;
            for (Certificate certificate : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
                trusted.setCertificateEntry("ca-" + n++, certificate);
            }
            TrustManagerFactory trust = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
            trust.init(trusted);
            SSLContext context = SSLContext.getInstance("TLS");
            context.init(null, trust.getTrustManagers(), null);
            return context.getSocketFactory();
        } catch (GeneralSecurityException e) {
            throw new IOException("cannot trust the CA certificates in " + pemFile, e);
        }
    }

    private final class Writer implements SinkWriter<Row> {
        private final UnifiedJedis redis;
        /** The batch being written (opened at its first row), and its replies to check. */
        private PipelineBase pipeline;
        private final List<Response<?>> replies = new ArrayList<>();
        private int rows;

        Writer(UnifiedJedis redis) {
            this.redis = redis;
        }

        @Override
        public void write(Row row, Context context) throws IOException {
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
            if (++rows >= batchSize) {
                flush(false);
            }
        }

        @Override
        public void flush(boolean endOfInput) throws IOException {
            if (pipeline == null) {
                return;
            }
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
