package pizzastream.flink;

import java.io.IOException;
import java.io.InputStream;
import java.io.Serializable;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.util.Set;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocketFactory;
import javax.net.ssl.TrustManagerFactory;
import redis.clients.jedis.DefaultJedisClientConfig;
import redis.clients.jedis.HostAndPort;
import redis.clients.jedis.JedisClientConfig;
import redis.clients.jedis.JedisCluster;
import redis.clients.jedis.UnifiedJedis;

/**
 * Where and how the JVM operators reach Redis ({@link RedisSink}, {@link OrderStatusGate}):
 * the one description of the connection, built from the {@code Redis} property group by
 * connectors/redis_store.py {@code jvm_endpoint}, serialized with the operators that use it.
 *
 * <p>Connects as ElastiCache with in-transit encryption and RBAC expects: AUTH as {@code user}
 * (the default user when empty or {@code default}: a plain {@code AUTH password}, as an
 * ElastiCache AUTH token expects) with {@code password} (no AUTH when empty), and TLS when
 * {@code tls}, the server's certificate checked against {@code caFile} (PEM; the JVM's trust
 * store when empty) and its name against {@code host}. With {@code clusterMode} the server is
 * a Redis cluster (ElastiCache cluster mode) whose configuration endpoint is {@code host}: a
 * {@link JedisCluster} learns the shards from it, with the same AUTH and TLS for every node.
 *
 * <p>{@code writeRetrySeconds} is how long a writer keeps sending a batch again after the
 * connection failed or Redis answered an error reply of a restart or failover (LOADING,
 * READONLY, ...: {@link RedisBatchSender}): a Redis restart or failover of a few seconds is
 * ridden out instead of restarting the job; 0 fails at the first such failure.
 */
public final class RedisEndpoint implements Serializable {
    private static final long serialVersionUID = 1L;

    /** Redis's name of the user a plain {@code AUTH password} authenticates. */
    private static final String DEFAULT_USER = "default";

    private final String host;
    private final int port;
    private final String user;
    private final String password;
    private final boolean tls;
    private final String caFile;
    private final boolean clusterMode;
    private final int writeRetrySeconds;

    public RedisEndpoint(String host, int port, String user, String password, boolean tls,
                         String caFile, boolean clusterMode, int writeRetrySeconds) {
        if (writeRetrySeconds < 0) {
            throw new IllegalArgumentException("writeRetrySeconds >= 0");
        }
        this.host = host;
        this.port = port;
        this.user = user;
        this.password = password;
        this.tls = tls;
        this.caFile = caFile;
        this.clusterMode = clusterMode;
        this.writeRetrySeconds = writeRetrySeconds;
    }

    /** How long a batch is sent again after a connection failure or a transient error reply
     * (0: never). */
    public int writeRetrySeconds() {
        return writeRetrySeconds;
    }

    /** A client connected as described above; the caller closes it. */
    public UnifiedJedis connect() throws IOException {
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
}
