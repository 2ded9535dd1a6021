package pizzastream.flink;

import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.util.List;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocketFactory;
import javax.net.ssl.TrustManagerFactory;
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
 *
 * <p>Connects as ElastiCache with in-transit encryption and RBAC expects: AUTH as {@code user}
 * (the default user when empty or {@code default}: a plain {@code AUTH password}, as an
 * ElastiCache AUTH token expects) with {@code password} (no AUTH when empty), and TLS when
 * {@code tls}, the server's certificate checked against {@code caFile} (PEM; the JVM's trust
 * store when empty) and its name against {@code host}. Every reply of a pipeline is checked:
 * an error reply (a refused write, a key of another type, out of memory) fails the flush, so
 * the job restarts from its checkpoint and writes again rather than losing the update.
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
    private final long ttlSeconds;
    private final int batchSize;

    public RedisSink(String host, int port, String user, String password, boolean tls,
                     String caFile, long ttlSeconds, int batchSize) {
        this.host = host;
        this.port = port;
        this.user = user;
        this.password = password;
        this.tls = tls;
        this.caFile = caFile;
        this.ttlSeconds = ttlSeconds;
        this.batchSize = batchSize;
    }

    @Override
    @SuppressWarnings("deprecation")
    public SinkWriter<Row> createWriter(InitContext context) throws IOException {
        return new Writer(connect());
    }

    private Jedis connect() throws IOException {
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
        return new Jedis(new HostAndPort(host, port), config.build());
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
        private final Jedis jedis;
        private Pipeline pipeline;
        private int pending;

        Writer(Jedis jedis) {
            this.jedis = jedis;
            this.pipeline = jedis.pipelined();
        }

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
            List<Object> replies;
            try {
                replies = pipeline.syncAndReturnAll();
            } catch (RuntimeException e) {
                throw new IOException("Redis write failed; the job restarts from its checkpoint", e);
            }
            pipeline = jedis.pipelined();
            pending = 0;
            // Jedis hands error replies back as values, not exceptions: check every one.
            for (Object reply : replies) {
                if (reply instanceof Throwable) {
                    throw new IOException("Redis refused a write (" + ((Throwable) reply).getMessage()
                            + "); the job restarts from its checkpoint", (Throwable) reply);
                }
            }
        }

        @Override
        public void close() {
            jedis.close();
        }
    }
}
