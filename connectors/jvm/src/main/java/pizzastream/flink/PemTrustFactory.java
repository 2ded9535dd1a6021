package pizzastream.flink;

import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;
import org.postgresql.ssl.WrappedFactory;

/**
 * pgjdbc's TLS sockets trusting exactly the CA certificates of one PEM file, read from the
 * classpath ({@code classpath:certs/rds-ca-bundle.pem}, inside the jar every TaskManager
 * has) or from a file path. pgjdbc's own {@code sslrootcert} takes a file path only, and a
 * path the job's client resolves may not exist where the sinks run (MSF unpacks the
 * application on the JobManager; TaskManagers get the jar). Named by
 * {@code sslfactory=pizzastream.flink.PemTrustFactory&sslfactoryarg=...}
 * ({@code pizzastream.config.jdbc_url}); with {@code sslmode=verify-full} pgjdbc still checks
 * the server's name against the host, after this factory's trust has verified its chain.
 */
public final class PemTrustFactory extends WrappedFactory {
    private static final String CLASSPATH = "classpath:";

    public PemTrustFactory(String source) throws GeneralSecurityException, IOException {
        KeyStore trusted = KeyStore.getInstance(KeyStore.getDefaultType());
        trusted.load(null, null);
        int count = 0;
        try (InputStream pem = open(source)) {
            for (Certificate certificate : CertificateFactory.getInstance("X.509").generateCertificates(pem)) {
                trusted.setCertificateEntry("ca-" + count++, certificate);
            }
        }
        if (count == 0) {
            throw new GeneralSecurityException("no certificate in " + source);
        }
        TrustManagerFactory trust = TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        trust.init(trusted);
        SSLContext context = SSLContext.getInstance("TLS");
        context.init(null, trust.getTrustManagers(), null);
        factory = context.getSocketFactory();
    }

    private static InputStream open(String source) throws IOException {
        if (source.startsWith(CLASSPATH)) {
            String resource = source.substring(CLASSPATH.length());
            InputStream in = PemTrustFactory.class.getClassLoader().getResourceAsStream(resource);
            if (in == null) {
                throw new IOException("no resource " + resource + " on the classpath");
            }
            return in;
        }
        return new FileInputStream(source);
    }
}
