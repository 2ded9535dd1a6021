package pizzastream.flink;

import java.io.File;
import java.io.IOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import redis.clients.jedis.Jedis;
import redis.clients.jedis.exceptions.JedisDataException;
import redis.clients.jedis.params.ShutdownParams;

/**
 * A redis-server of a test's own (plain TCP, no AUTH) on a free port, in a temporary
 * directory: {@link #stop} shuts it down keeping its data ({@code SHUTDOWN SAVE}, as the
 * failure suite restarts the stack's Redis and as a replica failover keeps it), {@link #start}
 * starts it again on the same port with that data, {@link #startLoading} so that it answers
 * LOADING for a while first. {@link #replicaOf} makes it a replica of another (it answers
 * READONLY to writes), {@link #promote} a primary again, as a failover does;
 * {@link #clusterNode} starts one in cluster mode. {@link #close} stops it and removes the
 * directory.
 */
final class RedisTestServer implements AutoCloseable {
    final int port;
    /** The cluster bus port of a {@link #clusterNode}, 0 for a server without cluster mode. */
    final int busPort;
    private final Path dir;
    /** Settings of this server beyond the common ones, at every start. */
    private final List<String> config;
    private Process process;

    RedisTestServer() throws IOException, InterruptedException {
        this(0);
    }

    private RedisTestServer(int busPort) throws IOException, InterruptedException {
        try (ServerSocket free = new ServerSocket(0)) {
            port = free.getLocalPort();
        }
        dir = Files.createTempDirectory("redis-test-");
        this.busPort = busPort;
        this.config = busPort == 0 ? List.of() : List.of("--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf", "--cluster-port", Integer.toString(busPort));
        start();
    }

    /** A server in cluster mode, its cluster bus on a free port of its own, holding no slots:
     * the test gives them ({@code CLUSTER ADDSLOTSRANGE}) and introduces the nodes
     * ({@code CLUSTER MEET} with the {@link #busPort}). */
    static RedisTestServer clusterNode() throws IOException, InterruptedException {
        int bus;
        try (ServerSocket free = new ServerSocket(0)) {
            bus = free.getLocalPort();
        }
        return new RedisTestServer(bus);
    }

    /** An endpoint of this server with the given retry budget. */
    RedisEndpoint endpoint(int writeRetrySeconds) {
        return new RedisEndpoint("127.0.0.1", port, "", "", false, "", false, writeRetrySeconds);
    }

    /** An endpoint of the cluster this node is in (its configuration endpoint). */
    RedisEndpoint clusterEndpoint(int writeRetrySeconds) {
        return new RedisEndpoint("127.0.0.1", port, "", "", false, "", true, writeRetrySeconds);
    }

    /** A plain client of this server (the caller closes it). */
    Jedis client() {
        return new Jedis("127.0.0.1", port);
    }

    void start() throws IOException, InterruptedException {
        launch();
        awaitReply("PONG");
    }

    /**
     * Starts the server again, loading the data it was stopped with slowly (Redis's own test
     * settings: {@code key-load-delay} microseconds per key, events served every KiB loaded),
     * and returns once it answers LOADING, as Redis does while it loads its dataset (a restart,
     * a replica's full sync). A thousand keys take about 0.2 s per 100 microseconds.
     */
    void startLoading(int keyLoadDelayMicros) throws IOException, InterruptedException {
        launch("--key-load-delay", Integer.toString(keyLoadDelayMicros),
                "--loading-process-events-interval-bytes", "1024");
        awaitReply("LOADING");
    }

    private void launch(String... config) throws IOException {
        List<String> command = new ArrayList<>(List.of("redis-server", "--port",
                Integer.toString(port), "--bind", "127.0.0.1", "--dir", dir.toString(),
                "--save", "", "--appendonly", "no",
                "--repl-diskless-sync-delay", "0"));     // a replica syncs at once, not in 5 s
        command.addAll(this.config);
        command.addAll(List.of(config));
        process = new ProcessBuilder(command)
                .redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.appendTo(
                        new File(dir.toFile(), "redis.log")))
                .start();
    }

    /** Waits until PING answers {@code expected}: PONG, or the code of an error reply. */
    private void awaitReply(String expected) throws IOException, InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        String reply;
        while (true) {
            try (Jedis redis = client()) {
                reply = redis.ping();
            } catch (JedisDataException e) {
                reply = e.getMessage().split(" ", 2)[0];
            } catch (RuntimeException e) {
                if (System.nanoTime() > deadline || !process.isAlive()) {
                    throw new IOException("redis-server did not start on port " + port, e);
                }
                Thread.sleep(50);
                continue;
            }
            if (expected.equals(reply)) {
                return;
            }
            if ("PONG".equals(reply) || System.nanoTime() > deadline) {
                throw new IOException("redis-server on port " + port + " answered " + reply
                        + ", not " + expected);
            }
            Thread.sleep(50);
        }
    }

    /** Makes this server a replica of {@code primary}, once it has synced with it. */
    void replicaOf(RedisTestServer primary) throws IOException, InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        try (Jedis redis = client()) {
            redis.replicaof("127.0.0.1", primary.port);
            while (!redis.info("replication").contains("master_link_status:up")) {
                if (System.nanoTime() > deadline) {
                    throw new IOException("the replica on port " + port + " did not sync");
                }
                Thread.sleep(50);
            }
        }
    }

    /** Makes this server a primary again ({@code REPLICAOF NO ONE}), as a failover does. */
    void promote() {
        try (Jedis redis = client()) {
            redis.replicaofNoOne();
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

    /** Promotes this server {@code afterMillis} from now, on another thread (a failover). */
    Thread promoteLater(long afterMillis) {
        Thread later = new Thread(() -> {
            try {
                Thread.sleep(afterMillis);
            } catch (InterruptedException e) {
                return;
            }
            promote();
        });
        later.start();
        return later;
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
