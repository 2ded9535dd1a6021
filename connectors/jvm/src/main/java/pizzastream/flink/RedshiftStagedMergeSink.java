package pizzastream.flink;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import java.util.zip.GZIPInputStream;
import java.util.zip.GZIPOutputStream;
import org.apache.flink.core.fs.FSDataInputStream;
import org.apache.flink.core.fs.FSDataOutputStream;
import org.apache.flink.core.fs.FileSystem;
import org.apache.flink.core.fs.Path;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.node.ArrayNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.flink.types.Row;
import org.postgresql.copy.CopyManager;
import org.postgresql.core.BaseConnection;

/**
 * Loads rows into Redshift the way Redshift is loaded: per checkpoint, the rows received
 * since the previous one become ONE gzipped CSV file in S3 with a manifest naming it, then
 * ONE transaction runs {@code before} (create the staging table), the COPY of the manifest
 * into it ({@code copyTemplate} with {@code {manifest}} replaced by the manifest's URL), and
 * {@code after} (delete the staged keys, insert, log the publication, drop the stage).
 * Redshift aborts one of two conflicting serializable transactions; a conflict rolls back and
 * runs the whole transaction again (the files are immutable), up to {@code attempts} times.
 *
 * <p>Idempotent across restarts: a replay after a restart loads the same keys again and the
 * merge replaces them, so at-least-once delivery leaves each row exactly once. Files are
 * named by a writer id fresh at every start plus a sequence, so a restarted writer never
 * overwrites a file another load may still read.
 *
 * <p><b>Stand-in.</b> When {@code standInTable} is not empty the connection is a PostgreSQL
 * one playing Redshift (serializable transactions too), and the COPY from S3, which
 * PostgreSQL lacks, is performed by reading that very manifest and its files back from S3 and
 * copying them into {@code standInTable} through PostgreSQL's COPY: everything else is the
 * statements Redshift runs.
 *
 * <p>Shaped as every sink of the project ({@link CheckpointFlushedSink}), with no count or
 * time threshold: only checkpoints (and the end of input) load, each on a connection of its own.
 */
public final class RedshiftStagedMergeSink extends CheckpointFlushedSink<Row> {
    private static final long serialVersionUID = 1L;
    private static final DateTimeFormatter TIMESTAMP = DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss.SSSSSS");

    private final String url;
    private final String user;
    private final String password;
    private final ArrayList<String> before;
    private final String copyTemplate;
    private final ArrayList<String> after;
    private final String loadPrefix;
    private final String standInTable;
    private final int attempts;
    private final long backoffMillis;

    public RedshiftStagedMergeSink(String url, String user, String password, List<String> before,
                                   String copyTemplate, List<String> after, String loadPrefix,
                                   String standInTable, int attempts, long backoffMillis) {
        super(0, 0);
        this.url = url;
        this.user = user;
        this.password = password;
        this.before = new ArrayList<>(before);
        this.copyTemplate = copyTemplate;
        this.after = new ArrayList<>(after);
        this.loadPrefix = loadPrefix.endsWith("/") ? loadPrefix : loadPrefix + "/";
        this.standInTable = standInTable;
        this.attempts = attempts;
        this.backoffMillis = backoffMillis;
    }

    @Override
    protected Buffer<Row> newBuffer() {
        return new Load();
    }

    private Connection connect() throws SQLException {
        Connection connection = JobJarDrivers.connect(url, user, password);
        if (!standInTable.isEmpty()) {
            connection.setTransactionIsolation(Connection.TRANSACTION_SERIALIZABLE);
        }
        return connection;
    }

    static boolean isSerializationConflict(SQLException e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof SQLException) {
                String state = ((SQLException) t).getSQLState();
                if ("40001".equals(state) || "40P01".equals(state)) {
                    return true;
                }
            }
            String message = t.getMessage();
            if (message != null && message.toLowerCase().contains("serializable isolation violation")) {
                return true;
            }
        }
        return false;
    }

    private final class Load implements Buffer<Row> {
        private final List<Row> pending = new ArrayList<>();
        private String writerId;
        private long sequence;

        @Override
        public void setup(int subtask) {
            writerId = subtask + "-" + UUID.randomUUID();
        }

        @Override
        public int write(Row row) {
            pending.add(row);
            return pending.size();
        }

        @Override
        public void flush() throws IOException {
            String manifest = stage(LocalDateTime.now(ZoneOffset.UTC));
            String copy = copyTemplate.replace("{manifest}", manifest);
            for (int attempt = 1; ; attempt++) {
                try (Connection connection = connect()) {
                    try {
                        load(connection, copy, manifest);
                        break;
                    } catch (SQLException e) {
                        connection.rollback();
                        throw e;
                    }
                } catch (SQLException e) {
                    if (attempt >= attempts || !isSerializationConflict(e)) {
                        throw new IOException("warehouse load of " + manifest
                                + " failed; the job restarts from its checkpoint", e);
                    }
                    sleep(backoffMillis * attempt);
                }
            }
            pending.clear();
        }

        /** Writes the pending rows (then the load time) as a gzipped CSV and its manifest. */
        private String stage(LocalDateTime loadedAt) throws IOException {
            String base = loadPrefix + writerId + "-" + String.format("%08d", sequence++) + "/";
            Path data = new Path(base + "part-00000.csv.gz");
            ByteArrayOutputStream bytes = new ByteArrayOutputStream();
            try (Writer csv = new OutputStreamWriter(new GZIPOutputStream(bytes), StandardCharsets.UTF_8)) {
                for (Row row : pending) {
                    for (int i = 0; i < row.getArity(); i++) {
                        csv.write(csvField(row.getField(i)));
                        csv.write(',');
                    }
                    csv.write(csvField(loadedAt));
                    csv.write('\n');
                }
            }
            write(data, bytes.toByteArray());
            ObjectMapper json = new ObjectMapper();
            ObjectNode manifest = json.createObjectNode();
            ObjectNode entry = manifest.putArray("entries").addObject();
            entry.put("url", data.toUri().toString());
            entry.put("mandatory", true);
            entry.putObject("meta").put("content_length", bytes.size());
            Path manifestPath = new Path(base + "manifest.json");
            write(manifestPath, json.writeValueAsBytes(manifest));
            return manifestPath.toUri().toString();
        }

        private void write(Path path, byte[] body) throws IOException {
            FileSystem fs = path.getFileSystem();
            try (FSDataOutputStream out = fs.create(path, FileSystem.WriteMode.OVERWRITE)) {
                out.write(body);
            }
        }

        private void load(Connection connection, String copy, String manifest) throws SQLException, IOException {
            try (Statement statement = connection.createStatement()) {
                for (String sql : before) {
                    statement.execute(sql);
                }
                if (standInTable.isEmpty()) {
                    statement.execute(copy);
                } else {
                    copyLikeRedshift(connection, manifest);
                }
                for (String sql : after) {
                    statement.execute(sql);
                }
            }
            connection.commit();
        }

        /** The stand-in's COPY FROM S3 MANIFEST: every mandatory file, its length checked. */
        private void copyLikeRedshift(Connection connection, String manifest) throws SQLException, IOException {
            JsonNode entries;
            Path manifestPath = new Path(manifest);
            try (FSDataInputStream in = manifestPath.getFileSystem().open(manifestPath)) {
                entries = new ObjectMapper().readTree(in).get("entries");
            }
            CopyManager copier = new CopyManager(connection.unwrap(BaseConnection.class));
            for (JsonNode entry : (ArrayNode) entries) {
                Path file = new Path(entry.get("url").asText());
                long length = file.getFileSystem().getFileStatus(file).getLen();
                if (length != entry.get("meta").get("content_length").asLong()) {
                    throw new IOException(file + " is " + length + " bytes, the manifest says "
                            + entry.get("meta").get("content_length"));
                }
                try (InputStream in = new GZIPInputStream(file.getFileSystem().open(file))) {
                    copier.copyIn("COPY " + standInTable + " FROM STDIN WITH (FORMAT csv)", in);
                }
            }
        }

        @Override
        public void close() {
            // every load closes its own connection
        }
    }

    static String csvField(Object value) {
        if (value == null) {
            return "";
        }
        if (value instanceof LocalDateTime) {
            return ((LocalDateTime) value).format(TIMESTAMP);
        }
        if (value instanceof java.sql.Timestamp) {
            return ((java.sql.Timestamp) value).toLocalDateTime().format(TIMESTAMP);
        }
        if (value instanceof BigDecimal) {
            return ((BigDecimal) value).toPlainString();
        }
        if (value instanceof Number) {
            return value.toString();
        }
        String text = value.toString();
        return "\"" + text.replace("\"", "\"\"") + "\"";
    }

    private static void sleep(long millis) throws IOException {
        try {
            Thread.sleep(millis);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted while waiting to retry a warehouse load", e);
        }
    }
}
