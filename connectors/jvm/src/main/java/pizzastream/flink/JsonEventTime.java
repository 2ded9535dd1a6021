package pizzastream.flink;

import java.io.IOException;
import java.util.HashMap;
import java.util.Map;
import org.apache.flink.api.common.eventtime.TimestampAssigner;
import org.apache.flink.api.common.eventtime.TimestampAssignerSupplier;
import org.apache.flink.api.common.eventtime.Watermark;
import org.apache.flink.api.common.eventtime.WatermarkGenerator;
import org.apache.flink.api.common.eventtime.WatermarkGeneratorSupplier;
import org.apache.flink.api.common.eventtime.WatermarkOutput;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;
import org.apache.flink.util.clock.RelativeClock;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Event time and watermarks of JSON text records that carry their event time as epoch
 * milliseconds in a top-level field (the {@code "t"} of a sale). Used as the source's strategy,
 * so Flink runs one generator per Kinesis shard and the source's watermark is the oldest of them.
 *
 * <p>A shard's watermark is the newest event time it has delivered minus the out-of-orderness
 * bound: a record up to that much older than the newest is on time (in-store sales arrive in
 * 15-minute POS batches, so the bound is larger than that).
 *
 * <p>A shard that has delivered nothing for {@code idleMillis} follows the wall clock instead
 * (now minus the bound): it has caught up, and whatever it delivers next happened after that.
 * Flink's own idleness would merely stop waiting for such a shard; when every shard is quiet
 * (all stores closed for the night) nothing would advance and the last hour of the day would
 * wait for the next morning's first sale. A shard that has never delivered anything has no
 * event time to go by, but once quiet it has caught up all the same: it follows the wall clock
 * too. That is what a restored job needs: its shards resume after the records the checkpoint
 * holds, and on a quiet stream (the night, a replay already read) they deliver nothing, so the
 * hour the watermark had not yet closed when the job stopped would wait for the next sale
 * (docs/failures.md item 10). The reader's main output is the exception: it is only marked
 * idle. The Kinesis reader never writes to it, and it reaches the source's watermark
 * directly, not as the minimum of the shards': following the wall clock, it would jump past a
 * backlog still being read. Flink creates its generator first, before any shard's (one
 * strategy object per source subtask, deserialized with it). Quiet time is measured on the
 * input-activity clock, which stands still while the source is back-pressured, so a busy job
 * never looks idle; a shard that stays silent longer than the idle time while it still has a
 * backlog (GetRecords throttled from the start) has its backlog's hours closed early, and those
 * sales arrive as late corrections, as on a shard that had delivered before.
 *
 * <p>POS progress markers ({@code {"pos":<store system>,"s":<store>,"t":<ms>}}, put by POS
 * ingestion after a store system's batch, with each of its stores' partition keys so one
 * follows that store's sales on their shard) hold the watermark back: a shard's watermark
 * never passes the oldest progress of the store systems it has heard from, so an hour closes
 * once every store system's batches covering it are in, not after a fixed bound that the POS
 * cadence would have to fit in. A silent store system holds it at most {@code holdMillis}
 * behind the newest sale (on a quiet shard, the wall clock): past that the hour is published
 * without it and its sales come as late corrections. A marker is not a sale: it moves neither
 * the newest event time nor, alone, the quiet clock's start.
 *
 * <p>Records are parsed only up to the field. One without a readable field keeps the time
 * Kinesis received it; the stream is written by the pipeline itself, so that is a bug upstream,
 * and it must not stop the job.
 */
public final class JsonEventTime implements WatermarkStrategy<String> {
    private static final long serialVersionUID = 1L;
    private static final Logger LOG = LoggerFactory.getLogger(JsonEventTime.class);
    private static final JsonFactory JSON = new JsonFactory();
    static final String PROGRESS_PREFIX = "{\"pos\":";

    private final String field;
    private final long outOfOrdernessMillis;
    private final long idleMillis;
    private final long holdMillis;
    /** Generators this subtask's copy of the strategy has made: the first is the main output's. */
    private transient int generatorsCreated;

    public JsonEventTime(String field, long outOfOrdernessMillis, long idleMillis) {
        this(field, outOfOrdernessMillis, idleMillis, outOfOrdernessMillis);
    }

    public JsonEventTime(String field, long outOfOrdernessMillis, long idleMillis, long holdMillis) {
        this.field = field;
        this.outOfOrdernessMillis = outOfOrdernessMillis;
        this.idleMillis = idleMillis;
        this.holdMillis = Math.max(holdMillis, outOfOrdernessMillis);
    }

    /**
     * The watermark rule, apart from its state so it can be checked directly: the newest sale
     * less the out-of-orderness bound (on a quiet shard at least the clock less it), held back
     * to the oldest store system's progress ({@code Long.MAX_VALUE}: none heard of), never more
     * than {@code holdMillis} behind the newest sale (quiet: behind the clock).
     */
    public static long watermark(long newestEventTime, long oldestProgress, boolean quiet, long now,
                                 long outOfOrdernessMillis, long holdMillis) {
        long reference = quiet ? Math.max(newestEventTime, now) : newestEventTime;
        long held = Math.min(reference - outOfOrdernessMillis, oldestProgress);
        return Math.max(held, reference - holdMillis) - 1;
    }

    static boolean isProgress(String record) {
        return record.startsWith(PROGRESS_PREFIX);
    }

    @Override
    public TimestampAssigner<String> createTimestampAssigner(TimestampAssignerSupplier.Context context) {
        return this::eventTime;
    }

    @Override
    public WatermarkGenerator<String> createWatermarkGenerator(WatermarkGeneratorSupplier.Context context) {
        boolean mainOutput = generatorsCreated++ == 0;
        LOG.info("JsonEventTime: watermark generator {} ({})", generatorsCreated,
                 mainOutput ? "the reader's main output" : "a shard");
        return new Generator(context.getInputActivityClock(), mainOutput);
    }

    long eventTime(String record, long receivedAt) {
        long leading = leadingInteger(record, field);
        return leading != NOT_LEADING ? leading : parsedEventTime(record, receivedAt);
    }

    /** What {@link #leadingInteger} returns when it leaves the record to the parser. */
    static final long NOT_LEADING = Long.MIN_VALUE;

    /**
     * The integer value of top-level {@code field} when the record opens with plain fields up
     * to it, as every sale and progress marker does ({@code {"e":"...","o":"...","s":42,...,
     * "t":1795000000123,...}}): names and string values of printable ASCII without escapes,
     * integers of at most 18 digits, no white space; read straight from the text, as {@link
     * #parsedEventTime} would read it. {@link #NOT_LEADING} as soon as the record holds
     * anything else before the field or the value is another kind of number, which the parser
     * then reads. A parser per sale took about a tenth of hourly_metrics' JVM samples (JFR).
     */
    static long leadingInteger(String record, String field) {
        int end = record.length();
        if (end == 0 || record.charAt(0) != '{') {
            return NOT_LEADING;
        }
        int i = 1;
        while (i < end && record.charAt(i) == '"') {
            int nameEnd = plainStringEnd(record, i + 1);
            if (nameEnd < 0 || nameEnd + 2 >= end || record.charAt(nameEnd + 1) != ':') {
                return NOT_LEADING;
            }
            boolean wanted = nameEnd - i - 1 == field.length()
                    && record.regionMatches(i + 1, field, 0, field.length());
            int at = nameEnd + 2;
            char first = record.charAt(at);
            int valueEnd;
            if (first == '"') {
                if (wanted) {
                    return NOT_LEADING;
                }
                valueEnd = plainStringEnd(record, at + 1);
                if (valueEnd < 0) {
                    return NOT_LEADING;
                }
                valueEnd++;
            } else {
                valueEnd = integerEnd(record, at);
                if (valueEnd < 0) {
                    return NOT_LEADING;
                }
                if (wanted) {
                    return Long.parseLong(record, at, valueEnd, 10);
                }
            }
            if (valueEnd >= end || record.charAt(valueEnd) != ',') {
                return NOT_LEADING;
            }
            i = valueEnd + 1;
        }
        return NOT_LEADING;
    }

    /** Where the string whose text starts at {@code from} ends (its closing quote), or -1 if
     * it holds a character that is not printable ASCII or an escape, or is cut short. */
    private static int plainStringEnd(String text, int from) {
        for (int i = from; i < text.length(); i++) {
            char c = text.charAt(i);
            if (c == '"') {
                return i;
            }
            if (c < 0x20 || c > 0x7E || c == '\\') {
                return -1;
            }
        }
        return -1;
    }

    /** Where the JSON integer starting at {@code from} ends, if it has 1 to 18 digits and is
     * followed by {@code ,} or {@code }}; else -1 (a fraction, an exponent, a leading zero,
     * a longer number, anything else). */
    private static int integerEnd(String text, int from) {
        int i = from;
        if (i < text.length() && text.charAt(i) == '-') {
            i++;
        }
        int digits = i;
        while (i < text.length() && text.charAt(i) >= '0' && text.charAt(i) <= '9') {
            i++;
        }
        int count = i - digits;
        if (count == 0 || count > 18 || (count > 1 && text.charAt(digits) == '0')
                || i >= text.length() || (text.charAt(i) != ',' && text.charAt(i) != '}')) {
            return -1;
        }
        return i;
    }

    /** The event time as Jackson's streaming parser reads it, up to the field. */
    long parsedEventTime(String record, long receivedAt) {
        try (JsonParser parser = JSON.createParser(record)) {
            if (parser.nextToken() != JsonToken.START_OBJECT) {
                return receivedAt;
            }
            while (parser.nextToken() == JsonToken.FIELD_NAME) {
                String name = parser.getCurrentName();
                JsonToken value = parser.nextToken();
                if (field.equals(name)) {
                    return value == JsonToken.VALUE_NUMBER_INT ? parser.getLongValue() : receivedAt;
                }
                parser.skipChildren();
            }
        } catch (IOException | RuntimeException unreadable) {
            // falls through: the record keeps its arrival time
        }
        return receivedAt;
    }

    /** The store system of a progress marker, -1 if it cannot be read. */
    static int storeSystem(String record) {
        int end = PROGRESS_PREFIX.length();
        while (end < record.length() && Character.isDigit(record.charAt(end))) {
            end++;
        }
        try {
            return Integer.parseInt(record.substring(PROGRESS_PREFIX.length(), end));
        } catch (NumberFormatException unreadable) {
            return -1;
        }
    }

    private final class Generator implements WatermarkGenerator<String> {
        private final RelativeClock activity;
        private final boolean mainOutput;
        private long newestEventTime = Long.MIN_VALUE;
        private long lastRecordAt;
        private long emitted = Long.MIN_VALUE;
        private final Map<Integer, Long> progress = new HashMap<>();

        Generator(RelativeClock activity, boolean mainOutput) {
            this.activity = activity;
            this.mainOutput = mainOutput;
            this.lastRecordAt = activity.relativeTimeMillis();
        }

        @Override
        public void onEvent(String record, long eventTime, WatermarkOutput output) {
            if (isProgress(record)) {
                int system = storeSystem(record);
                if (system >= 0) {
                    progress.merge(system, eventTime, Math::max);
                }
                return;
            }
            newestEventTime = Math.max(newestEventTime, eventTime);
            lastRecordAt = activity.relativeTimeMillis();
        }

        @Override
        public void onPeriodicEmit(WatermarkOutput output) {
            boolean quiet = activity.relativeTimeMillis() - lastRecordAt >= idleMillis;
            if (newestEventTime == Long.MIN_VALUE && (mainOutput || !quiet)) {
                if (quiet) {
                    output.markIdle();
                }
                return;
            }
            long oldest = Long.MAX_VALUE;
            for (long systemProgress : progress.values()) {
                oldest = Math.min(oldest, systemProgress);
            }
            long watermark = watermark(newestEventTime, oldest, quiet, System.currentTimeMillis(),
                                       outOfOrdernessMillis, holdMillis);
            if (watermark > emitted) {
                emitted = watermark;
                output.emitWatermark(new Watermark(watermark));
            }
        }
    }
}
