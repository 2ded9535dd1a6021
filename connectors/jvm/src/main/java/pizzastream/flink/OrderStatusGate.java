package pizzastream.flink;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.List;
import org.apache.flink.streaming.api.operators.AbstractStreamOperator;
import org.apache.flink.streaming.api.operators.BoundedOneInput;
import org.apache.flink.streaming.api.operators.ChainingStrategy;
import org.apache.flink.streaming.api.operators.OneInputStreamOperator;
import org.apache.flink.streaming.runtime.streamrecord.StreamRecord;
import org.apache.flink.types.Row;
import redis.clients.jedis.PipelineBase;
import redis.clients.jedis.Response;
import redis.clients.jedis.UnifiedJedis;
import redis.clients.jedis.exceptions.JedisDataException;

/**
 * Writes order statuses to Redis so that they only move forward, and puts out each refused
 * write as a dead letter.
 *
 * <p>In: the jobs' status commands, {@code Row("SET", <keyPrefix><order_id>, "", status)}
 * ({@link RedisSetCommands}, the rows {@link RedisSink} took before). Each is written by the
 * Lua script {@code script}
 * (connectors/redis_store.py {@code STATUS_WRITE_SCRIPT}, the rule of
 * pizzastream/order_status.py), atomically where the write lands: written when it moves the
 * status forward (reply 1), nothing when the same status is there (0: a replay), refused when
 * another final status is there (the reply is that status). Out: one
 * {@code Row(dead_letter_id, job, reason, detail, event_id, order_id, payload, store_id)} per
 * refused write, built as {@code pizzastream.order_status.conflict_dead_letter} builds it (the
 * same id, so a refusal met again after a restart or repeated lands on the same row).
 *
 * <p>Writes go in pipelined batches of EVALSHA (one round trip per batch; a node that does not
 * know the script answers NOSCRIPT and those writes go again as EVAL, which also loads it). A
 * batch is written at {@code batchSize} rows, within {@code maxDelayMs}, before every
 * checkpoint barrier and at the end of input: the dead letters of the writes a checkpoint
 * covers are emitted before its barrier, so they reach the dead-letter sink's flush of that
 * checkpoint. After a restore the writes since the checkpoint run again: the winner's are
 * replays (0), the loser's are refused again and make the same dead letters. The key is one
 * slot, so on a Redis cluster each write goes to its key's node.
 *
 * <p>A connection failure or an error reply of a restart or failover (LOADING, READONLY, the
 * sender's {@code TRANSIENT_REPLIES}) does not fail the job at once: the batch is kept and
 * sent again, whole, on a new connection, by a {@link RedisBatchSender}, until the endpoint's
 * {@code writeRetrySeconds} run out. Part of it may have landed before the connection
 * dropped (or before the primary it reached was demoted), and those writes run a second
 * time; that is as safe as a restore's replay, and the dead letters come from the replies of
 * the batch that went through: a status the script wrote the first time is the order's
 * status when it runs again (a final status stays, and the jobs write only final ones), so it
 * replies 0 (a replay), never a refusal; a write it refused is refused again with the same
 * kept status. tests/pizzastream/test_order_status.py holds the rule to that ({@code settle}
 * of a batch sent again after any part of it landed), OrderStatusGateTest the gate. Other
 * error replies fail the job at once, as in {@link RedisSink}; NOSCRIPT, which a new primary
 * after a failover answers too (replicas do not have the scripts), is the gate's own: those
 * writes go again as EVAL.
 */
public final class OrderStatusGate extends AbstractStreamOperator<Row>
        implements OneInputStreamOperator<Row, Row>, BoundedOneInput {
    private static final long serialVersionUID = 1L;

    /** {@code pizzastream.order_status.CONFLICT_REASON}. */
    public static final String CONFLICT_REASON = "status_conflict";

    private final RedisEndpoint endpoint;
    private final long ttlSeconds;
    private final int batchSize;
    private final long maxDelayMs;
    private final String keyPrefix;
    private final String job;
    private final String script;

    private transient RedisBatchSender redis;
    private transient String sha;
    private transient List<String[]> pending;
    private transient boolean timerPending;

    public OrderStatusGate(RedisEndpoint endpoint, long ttlSeconds, int batchSize,
                           long maxDelayMs, String keyPrefix, String job, String script) {
        if (batchSize < 1 || maxDelayMs < 0) {
            throw new IllegalArgumentException("batchSize >= 1, maxDelayMs >= 0");
        }
        this.endpoint = endpoint;
        this.ttlSeconds = ttlSeconds;
        this.batchSize = batchSize;
        this.maxDelayMs = maxDelayMs;
        this.keyPrefix = keyPrefix;
        this.job = job;
        this.script = script;
        setChainingStrategy(ChainingStrategy.ALWAYS);
    }

    @Override
    public void open() throws Exception {
        super.open();
        redis = new RedisBatchSender(endpoint, "status write");
        sha = hex(MessageDigest.getInstance("SHA-1").digest(script.getBytes(StandardCharsets.UTF_8)));
        pending = new ArrayList<>();
    }

    @Override
    public void processElement(StreamRecord<Row> element) throws Exception {
        Row command = element.getValue();
        String key = String.valueOf(command.getField(1));
        if (!"SET".equals(command.getField(0)) || !key.startsWith(keyPrefix)) {
            throw new IOException("not an order status write: " + command);
        }
        pending.add(new String[] {key.substring(keyPrefix.length()), String.valueOf(command.getField(3))});
        if (pending.size() >= batchSize) {
            flush();
        } else if (!timerPending) {
            timerPending = true;
            long now = getProcessingTimeService().getCurrentProcessingTime();
            getProcessingTimeService().registerTimer(now + maxDelayMs, firing -> {
                timerPending = false;
                flush();
            });
        }
    }

    @Override
    public void prepareSnapshotPreBarrier(long checkpointId) throws Exception {
        flush();
    }

    @Override
    public void endInput() throws Exception {
        flush();
    }

    @Override
    public void finish() throws Exception {
        flush();
        super.finish();
    }

    @Override
    public void close() throws Exception {
        if (redis != null) {
            redis.close();
        }
        super.close();
    }

    /** Writes the pending statuses, emitting a dead letter per refused one. */
    private void flush() throws IOException {
        if (pending.isEmpty()) {
            return;
        }
        List<String[]> batch = pending;
        pending = new ArrayList<>();
        Object[] replies = run(batch, true);
        List<String[]> unknownScript = new ArrayList<>();
        List<Integer> retried = new ArrayList<>();
        for (int i = 0; i < batch.size(); i++) {
            if (replies[i] instanceof NoScript) {
                unknownScript.add(batch.get(i));
                retried.add(i);
            }
        }
        if (!unknownScript.isEmpty()) {
            Object[] again = run(unknownScript, false);
            for (int j = 0; j < again.length; j++) {
                replies[retried.get(j)] = again[j];
            }
        }
        for (int i = 0; i < batch.size(); i++) {
            Object reply = replies[i];
            if (reply instanceof Long) {
                continue;                        // 1 written, 0 the same status already there
            }
            String kept = reply instanceof byte[] ? new String((byte[]) reply, StandardCharsets.UTF_8)
                    : String.valueOf(reply);
            output.collect(new StreamRecord<>(conflict(batch.get(i)[0], batch.get(i)[1], kept)));
        }
    }

    /** Marks a reply of a node that did not know the script yet. */
    private static final class NoScript {}

    /** Runs the script on each write of {@code batch} (by its SHA or its text), sent again
     * after a connection failure or a transient error reply; the replies, in order. */
    private Object[] run(List<String[]> batch, boolean bySha) throws IOException {
        return redis.send(batch.size(), client -> attempt(client, batch, bySha));
    }

    private Object[] attempt(UnifiedJedis client, List<String[]> batch, boolean bySha) {
        List<Response<Object>> responses = new ArrayList<>(batch.size());
        List<String> ttl = List.of(Long.toString(ttlSeconds));
        PipelineBase pipeline = client.pipelined();
        for (String[] write : batch) {
            List<String> keys = List.of(keyPrefix + write[0]);
            List<String> args = List.of(write[1], ttl.get(0));
            responses.add(bySha ? pipeline.evalsha(sha, keys, args)
                                : pipeline.eval(script, keys, args));
        }
        pipeline.close();                        // syncs, hands the connections back
        Object[] replies = new Object[batch.size()];
        for (int i = 0; i < replies.length; i++) {
            try {
                replies[i] = RedisBatchSender.reply(responses.get(i));
            } catch (JedisDataException e) {
                if (!bySha || !String.valueOf(e.getMessage()).startsWith("NOSCRIPT")) {
                    throw e;
                }
                replies[i] = new NoScript();
            }
        }
        return replies;
    }

    /** {@code pizzastream.order_status.conflict_dead_letter(job, orderId, refused, kept)}. */
    Row conflict(String orderId, String refused, String kept) {
        String payload = orderId + "\t" + refused + "\t" + kept;
        String detail = "order " + orderId + ": status " + refused + " refused, the order already"
                + " has the final status " + kept + " (statuses only move forward)";
        return Row.of(deadLetterId(job, payload), job, CONFLICT_REASON, detail, null, orderId,
                payload, null);
    }

    /** {@code pizzastream.dead_letters.dead_letter}'s id: SHA-256 of the job, a NUL and the
     * record, first 32 hex digits. */
    static String deadLetterId(String job, String payload) {
        try {
            MessageDigest digest = MessageDigest.getInstance("SHA-256");
            digest.update(job.getBytes(StandardCharsets.UTF_8));
            digest.update((byte) 0);
            return hex(digest.digest(payload.getBytes(StandardCharsets.UTF_8))).substring(0, 32);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private static String hex(byte[] bytes) {
        StringBuilder text = new StringBuilder(2 * bytes.length);
        for (byte b : bytes) {
            text.append(Character.forDigit((b >> 4) & 0xF, 16)).append(Character.forDigit(b & 0xF, 16));
        }
        return text.toString();
    }
}
