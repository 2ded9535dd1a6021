package pizzastream.flink;

import java.io.IOException;
import java.io.StringReader;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Savepoint;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.flink.types.Row;
import org.postgresql.PGConnection;
import org.postgresql.copy.CopyManager;

/**
 * Upserts rows into a PostgreSQL (Aurora) table by COPYing each batch into a temporary
 * staging table and merging it with one {@code INSERT ... SELECT ... ON CONFLICT (pk) DO
 * UPDATE} statement: COPY's bulk speed with the semantics of an upsert by primary key.
 *
 * <p>Rows are {@code Row}s whose fields match {@code stageColumns} by position; the staging
 * table has exactly those columns (e.g. money in integer cents, times in epoch ms) and
 * {@code selectExpressions} turn them into the target's {@code targetColumns} inside the
 * database (e.g. {@code unit_price_cents / 100.0}, {@code to_timestamp(ts_ms / 1000.0)}).
 *
 * <p>Delivery ({@link CheckpointFlushedSink}): a batch is written every {@code batchRows}
 * distinct keys, {@code flushIntervalMs} after a row found no write scheduled and on every
 * checkpoint, in one transaction, so what a checkpoint covers is committed (at-least-once). Replays after a restart rewrite
 * the same keys (idempotent). Within a batch only the last row of each primary key is kept,
 * since one {@code INSERT ... ON CONFLICT DO UPDATE} may not touch a row twice.
 *
 * <p>Each batch is first tried as a plain {@code INSERT ... SELECT} (no conflict handling:
 * the common case, new keys only, and the cheaper statement); only if that hits a unique
 * violation (a replay after a restart) is it rolled back to a savepoint and merged with
 * {@code ON CONFLICT DO UPDATE}; a table whose keys are usually there already
 * ({@code updatesExpected}) is merged at once. Columns the sink does not write (e.g. {@code delivery_id},
 * set later by another writer) are never touched.
 */
public final class PostgresCopySink extends CheckpointFlushedSink<Row> {
    private static final long serialVersionUID = 1L;
    private static final String UNIQUE_VIOLATION = "23505";

    private final String url;
    private final String user;
    private final String password;
    private final String targetTable;
    private final String[] stageColumns;       // "name type"
    private final String[] targetColumns;
    private final String[] selectExpressions;
    private final String[] primaryKey;         // target column names
    private final boolean updatesExpected;

    public PostgresCopySink(String url, String user, String password, String targetTable,
                            String[] stageColumns, String[] targetColumns,
                            String[] selectExpressions, String[] primaryKey, int batchRows,
                            long flushIntervalMs, boolean updatesExpected) {
        super(batchRows, flushIntervalMs);
        if (targetColumns.length != selectExpressions.length) {
            throw new IllegalArgumentException("one select expression per target column");
        }
        if (!Arrays.asList(targetColumns).containsAll(Arrays.asList(primaryKey))) {
            throw new IllegalArgumentException("the primary key must be among the target columns");
        }
        this.url = url;
        this.user = user;
        this.password = password;
        this.targetTable = targetTable;
        this.stageColumns = stageColumns.clone();
        this.targetColumns = targetColumns.clone();
        this.selectExpressions = selectExpressions.clone();
        this.primaryKey = primaryKey.clone();
        this.updatesExpected = updatesExpected;
    }

    @Override
    protected Buffer<Row> newBuffer() {
        return new Stage();
    }

    private String stageName() {
        return "stage_" + targetTable.replaceAll("[^A-Za-z0-9_]", "_");
    }

    private String stageColumnNames() {
        StringBuilder sb = new StringBuilder();
        for (String column : stageColumns) {
            if (sb.length() > 0) {
                sb.append(", ");
            }
            sb.append(column.trim().split("\\s+")[0]);
        }
        return sb.toString();
    }

    String insertSql() {
        return "INSERT INTO " + targetTable + " (" + String.join(", ", targetColumns) + ") SELECT "
                + String.join(", ", selectExpressions) + " FROM " + stageName();
    }

    /**
     * The statement a batch is first written with: the plain insert, unless the table's keys
     * are usually there already (a row per store and ingredient, rewritten as stock moves),
     * where the insert would fail on nearly every batch, costing a statement and an error in
     * the server's log each time.
     */
    String firstSql() {
        return updatesExpected ? mergeSql() : insertSql();
    }

    String mergeSql() {
        List<String> updates = new ArrayList<>();
        for (String column : targetColumns) {
            if (!Arrays.asList(primaryKey).contains(column)) {
                updates.add(column + " = EXCLUDED." + column);
            }
        }
        return "INSERT INTO " + targetTable + " (" + String.join(", ", targetColumns) + ") SELECT "
                + String.join(", ", selectExpressions) + " FROM " + stageName()
                + " ON CONFLICT (" + String.join(", ", primaryKey) + ") DO "
                + (updates.isEmpty() ? "NOTHING" : "UPDATE SET " + String.join(", ", updates));
    }

    /** Key of a row in the batch: the stage values the primary key's expressions read. */
    private int[] keyPositions() {
        int[] positions = new int[primaryKey.length];
        List<String> stageNames = Arrays.asList(stageColumnNames().split(", "));
        for (int i = 0; i < primaryKey.length; i++) {
            String expression = selectExpressions[Arrays.asList(targetColumns).indexOf(primaryKey[i])];
            int position = stageNames.indexOf(expression.trim());
            if (position < 0) {
                throw new IllegalArgumentException("primary key column " + primaryKey[i]
                        + " must be selected as a plain stage column, not " + expression);
            }
            positions[i] = position;
        }
        return positions;
    }

    private final class Stage implements Buffer<Row> {
        private final int[] keyPositions = keyPositions();
        private final Map<List<Object>, Row> batch = new LinkedHashMap<>();
        private final String insert = firstSql();
        private final String merge = mergeSql();
        private final StringBuilder text = new StringBuilder(1 << 16);
        private Connection connection;
        private CopyManager copy;

        @Override
        public void setup(int subtask) throws IOException {
            connect();
        }

        private void connect() throws IOException {
            try {
                connection = JobJarDrivers.connect(url, user, password);
                try (Statement statement = connection.createStatement()) {
                    statement.execute("CREATE TEMPORARY TABLE IF NOT EXISTS " + stageName() + " ("
                            + String.join(", ", stageColumns) + ") ON COMMIT DELETE ROWS");
                }
                connection.commit();
                copy = connection.unwrap(PGConnection.class).getCopyAPI();
            } catch (SQLException e) {
                throw new IOException("cannot connect to " + url, e);
            }
        }

        @Override
        public int write(Row row) {
            List<Object> key = new ArrayList<>(keyPositions.length);
            for (int position : keyPositions) {
                key.add(row.getField(position));
            }
            batch.remove(key);           // the last version of a key wins, in arrival order
            batch.put(key, row);
            return batch.size();
        }

        @Override
        public void flush() throws IOException {
            text.setLength(0);
            for (Row row : batch.values()) {
                appendCopyLine(row);
            }
            try {
                writeBatch();
            } catch (SQLException first) {
                // one reconnect for a dropped connection; anything else fails the job, which
                // restarts from its checkpoint and writes the batch again (idempotent)
                close();
                connect();
                try {
                    writeBatch();
                } catch (SQLException second) {
                    second.addSuppressed(first);
                    throw new IOException("COPY upsert into " + targetTable + " failed", second);
                }
            }
            batch.clear();
        }

        private void writeBatch() throws SQLException, IOException {
            copy.copyIn("COPY " + stageName() + " (" + stageColumnNames() + ") FROM STDIN",
                    new StringReader(text.toString()));
            try (Statement statement = connection.createStatement()) {
                Savepoint beforeInsert = connection.setSavepoint();
                try {
                    statement.executeUpdate(insert);
                    connection.releaseSavepoint(beforeInsert);
                } catch (SQLException conflict) {
                    if (!UNIQUE_VIOLATION.equals(conflict.getSQLState())) {
                        throw conflict;
                    }
                    connection.rollback(beforeInsert);   // keys already there: a replay
                    statement.executeUpdate(merge);
                }
            }
            connection.commit();   // ON COMMIT DELETE ROWS empties the stage
        }

        private void appendCopyLine(Row row) {
            for (int i = 0; i < stageColumns.length; i++) {
                if (i > 0) {
                    text.append('\t');
                }
                Object value = row.getField(i);
                if (value == null) {
                    text.append("\\N");
                } else {
                    escape(String.valueOf(value));
                }
            }
            text.append('\n');
        }

        private void escape(String value) {
            for (int i = 0; i < value.length(); i++) {
                char c = value.charAt(i);
                switch (c) {
                    case '\\': text.append("\\\\"); break;
                    case '\t': text.append("\\t"); break;
                    case '\n': text.append("\\n"); break;
                    case '\r': text.append("\\r"); break;
                    default: text.append(c);
                }
            }
        }

        @Override
        public void close() {
            if (connection != null) {
                try {
                    connection.close();
                } catch (SQLException ignored) {
                    // closing anyway
                }
                connection = null;
            }
        }
    }
}
