// Connects with pgjdbc to the JDBC URL given (as the jobs' JVM sinks do, from
// pizzastream.config.jdbc_url) and prints whether the session is encrypted; exits 1 with the
// driver's message when the connection is refused. Run as a single source file:
//   java -cp deploy/target/pizzastream-deps.jar tests/jvm/JdbcProbe.java <url> <user> <password>
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;

public class JdbcProbe {
    public static void main(String[] args) {
        try (Connection conn = DriverManager.getConnection(args[0], args[1], args[2]);
             ResultSet rs = conn.createStatement().executeQuery(
                     "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")) {
            rs.next();
            System.out.println("ssl=" + rs.getBoolean(1));
        } catch (SQLException e) {
            Throwable cause = e;
            StringBuilder message = new StringBuilder();
            while (cause != null) {
                message.append(cause).append('\n');
                cause = cause.getCause();
            }
            System.err.print(message);
            System.exit(1);
        }
    }
}
