package pizzastream.flink;

import java.io.File;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import redis.clients.jedis.Jedis;
import redis.clients.jedis.params.ShutdownParams;

/**
 * A redis-server of a test's own (plain TCP, no AUTH) on a free port, in a temporary
 * directory: {@link #stop} shuts it down keeping its data ({@code SHUTDOWN SAVE}, as the
 * failure suite restarts the stack's Redis and as a replica failover keeps it), {@link #start}
 * starts it again on the same port with that data. {@link #close} stops it and removes the
 * directory.
 */
final class RedisTestServer implements AutoCloseable {
    final int port;
    private final Path dir;
    private Process process;

    RedisTestServer() throws IOException, InterruptedException {
        try (ServerSocket free = new ServerSocket(0)) {
            port = free.getLocalPort();
        }
        dir = Files.createTempDirectory("redis-test-");
        start();
    }

    /** An endpoint of this server with the given retry budget. */
    RedisEndpoint endpoint(int writeRetrySeconds) {
        return new RedisEndpoint("127.0.0.1", port, "", "", false, "", false, writeRetrySeconds);
    }

    /** A plain client of this server (the caller closes it). */
    Jedis client() {
        return new Jedis("127.0.0.1", port);
    }

    void start() throws IOException, InterruptedException {
        process = new ProcessBuilder(List.of("redis-server", "--port", Integer.toString(port),
                "--bind", "127.0.0.1", "--dir", dir.toString(), "--save", "",
                "--appendonly", "no"))
                .redirectErrorStream(true)
                .redirectOutput(new File(dir.toFile(), "redis.log"))
                .start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (true) {
            try (Jedis redis = client()) {
                if ("PONG".equals(redis.ping())) {
                    return;
                }
            } catch (RuntimeException e) {
                if (System.nanoTime() > deadline || !process.isAlive()) {
                    throw new IOException("redis-server did not start on port " + port, e);
                }
                Thread.sleep(50);
            }
        }
    }

    void stop() throws InterruptedException {
        try (Jedis redis = client()) {
            redis.shutdown(ShutdownParams.shutdownParams().save());
        } catch (RuntimeException e) {
            // the server closes the connection as it goes
        }
        if (!process.waitFor(10, TimeUnit.SECONDS)) {
            process.destroyForcibly().waitFor();
        }
    }

    /** Starts the server again {@code afterMillis} from now, on another thread. */
    Thread startLater(long afterMillis) {
        Thread later = new Thread(() -> {
            try {
                Thread.sleep(afterMillis);
                start();
            } catch (IOException | InterruptedException e) {
                throw new IllegalStateException(e);
            }
        });
        later.start();
        return later;
    }

    @Override
    public void close() throws IOException, InterruptedException {
        if (process.isAlive()) {
            process.destroy();
            if (!process.waitFor(10, TimeUnit.SECONDS)) {
                process.destroyForcibly().waitFor();
            }
        }
        try (Stream<Path> files = Files.walk(dir)) {
            for (Path file : files.sorted(Comparator.reverseOrder()).collect(Collectors.toList())) {
                Files.delete(file);
            }
        }
    }
}
