package pizzastream.flink;

import java.io.IOException;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.types.Row;

/**
 * Loads rows into a warehouse table the way Redshift is loaded: never row by row into the
 * table, but per checkpoint, in ONE transaction, every row received since the previous
 * checkpoint into a staging table, then merge statements (delete the keys being replaced,
 * insert, log) that move them into the table. Readers see a checkpoint's rows all or none,
 * so an hour's metrics appear for every store at once.
 *
 * <p>The SQL comes from the caller ({@code connectors/warehouse.py}, which shares it with the
 * batch corrections): {@code before} statements (create the staging table), one {@code insert}
 * into it binding a row's fields in order and then the load time, and {@code after} statements
 * (merge, log, drop the staging table). A replay after a restart merges the same keys again,
 * so at-least-once delivery leaves each row exactly once.
 *
 * <p>Shaped as every sink of the project ({@link CheckpointFlushedSink}), with no count or
 * time threshold: only checkpoints (and the end of input) load. The connection is opened by
 * the first load, not by {@code setup}.
 */
public final class StagedMergeSink extends CheckpointFlushedSink<Row> {
    private static final long serialVersionUID = 1L;

    private final String url;
    private final String user;
    private final String password;
    private final ArrayList<String> before;
    private final String insert;
    private final ArrayList<String> after;

    public StagedMergeSink(String url, String user, String password, List<String> before,
                           String insert, List<String> after) {
        super(0, 0);
        this.url = url;
        this.user = user;
        this.password = password;
        this.before = new ArrayList<>(before);
        this.insert = insert;
        this.after = new ArrayList<>(after);
    }

    @Override
    protected Buffer<Row> newBuffer() {
        return new Load();
    }

    private final class Load implements Buffer<Row> {
        private final List<Row> pending = new ArrayList<>();
        private Connection connection;

        @Override
        public void setup(int subtask) {
            // the first flush connects
        }

        @Override
        public int write(Row row) {
            pending.add(row);
            return pending.size();
        }

        @Override
        public void flush() throws IOException {
            try {
                if (connection == null || connection.isClosed()) {
                    connection = JobJarDrivers.connect(url, user, password);
                }
                load(connection);
            } catch (SQLException e) {
                close();
                throw new IOException("warehouse load failed; the job restarts from its checkpoint", e);
            }
            pending.clear();
        }

        private void load(Connection connection) throws SQLException {
            LocalDateTime loadedAt = LocalDateTime.now(ZoneOffset.UTC);
            try (Statement statement = connection.createStatement()) {
                for (String sql : before) {
                    statement.execute(sql);
                }
                try (PreparedStatement rows = connection.prepareStatement(insert)) {
                    for (Row row : pending) {
                        int arity = row.getArity();
                        for (int i = 0; i < arity; i++) {
                            rows.setObject(i + 1, row.getField(i));
                        }
                        rows.setObject(arity + 1, loadedAt);
                        rows.addBatch();
                    }
                    rows.executeBatch();
                }
                for (String sql : after) {
                    statement.execute(sql);
                }
                connection.commit();
            } catch (SQLException e) {
                connection.rollback();
                throw e;
            }
        }

        @Override
        public void close() {
            if (connection != null) {
                try {
                    connection.close();
                } catch (SQLException ignored) {
                    // the connection is being discarded either way
                }
                connection = null;
            }
        }
    }
}
