package pizzastream.flink.bench;

import java.io.BufferedWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;

/**
 * Counts what one subtask handled and appends {@code <count> <epoch ms>} to
 * {@code <dir>/<name>-<subtask>.progress} about every 200 ms, so the benchmark harness reads
 * a steady-state rate out of a running job (without Flink's REST API) and lines it up with
 * its CPU samples. Costs a counter increment per record and a clock read per 256.
 */
final class Progress implements AutoCloseable {
    private static final long EVERY_MS = 200;

    private final BufferedWriter out;
    private long count;
    private long lastWrite;

    Progress(String dir, String name, int subtask) {
        try {
            Path path = Paths.get(dir, name + "-" + subtask + ".progress");
            out = Files.newBufferedWriter(path, StandardCharsets.US_ASCII,
                    StandardOpenOption.CREATE, StandardOpenOption.APPEND);
            write(System.currentTimeMillis());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    void add(long n) {
        count += n;
        if ((count & 0xff) < n || n > 0xff) {
            long now = System.currentTimeMillis();
            if (now - lastWrite >= EVERY_MS) {
                write(now);
            }
        }
    }

    private void write(long now) {
        try {
            out.write(count + " " + now + "\n");
            out.flush();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        lastWrite = now;
    }

    @Override
    public void close() {
        write(System.currentTimeMillis());
        try {
            out.close();
        } catch (IOException ignored) {
            // the harness has what it needs
        }
    }
}
