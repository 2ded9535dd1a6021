package pizzastream.flink;

import java.sql.Connection;
import java.sql.Driver;
import java.sql.SQLException;
import java.util.Properties;
import java.util.ServiceLoader;

/**
 * Connections through the JDBC drivers of the job's own jar. {@code DriverManager} only hands
 * out drivers registered from the JVM's class path or already loaded by the caller's class
 * loader; on a cluster the drivers are in Flink's user-code class loader, where nothing may
 * have loaded them yet, so the sinks look them up as services of that loader instead.
 */
final class JobJarDrivers {
    private JobJarDrivers() {
    }

    /** A connection to {@code url} with auto-commit off: every sink commits its own batches. */
    static Connection connect(String url, String user, String password) throws SQLException {
        Properties credentials = new Properties();
        credentials.setProperty("user", user);
        credentials.setProperty("password", password);
        for (Driver driver : ServiceLoader.load(Driver.class, JobJarDrivers.class.getClassLoader())) {
            if (driver.acceptsURL(url)) {
                Connection connection = driver.connect(url, credentials);
                connection.setAutoCommit(false);
                return connection;
            }
        }
        throw new SQLException("no JDBC driver in the job's jar accepts " + url);
    }
}
