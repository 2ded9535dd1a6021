package pizzastream.flink;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.apache.flink.api.common.eventtime.Watermark;
import org.apache.flink.api.common.eventtime.WatermarkGenerator;
import org.apache.flink.api.common.eventtime.WatermarkGeneratorSupplier;
import org.apache.flink.api.common.eventtime.WatermarkOutput;
import org.apache.flink.metrics.groups.UnregisteredMetricsGroup;
import org.apache.flink.metrics.MetricGroup;
import org.apache.flink.util.clock.ManualClock;
import org.apache.flink.util.clock.RelativeClock;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class JsonEventTimeTest {
    private static final long BOUND = 1_000;
    private static final long IDLE = 5_000;
    private static final long HOLD = 10_000;

    private final ManualClock activity = new ManualClock(1_000_000);
    private JsonEventTime strategy;

    /** What a generator said: watermarks as numbers, idleness as "idle". */
    private static final class Output implements WatermarkOutput {
        final List<String> said = new ArrayList<>();

        @Override
        public void emitWatermark(Watermark watermark) {
            said.add(String.valueOf(watermark.getTimestamp()));
        }

        @Override
        public void markIdle() {
            said.add("idle");
        }

        @Override
        public void markActive() {
            said.add("active");
        }

        long last() {
            return Long.parseLong(said.get(said.size() - 1));
        }
    }

    @BeforeEach
    void createStrategy() {
        strategy = new JsonEventTime("t", BOUND, IDLE, HOLD);
    }

    private WatermarkGenerator<String> generator() {
        return generator(strategy);
    }

    private WatermarkGenerator<String> generator(JsonEventTime of) {
        return of.createWatermarkGenerator(new WatermarkGeneratorSupplier.Context() {
            @Override
            public MetricGroup getMetricGroup() {
                return new UnregisteredMetricsGroup();
            }

            @Override
            public RelativeClock getInputActivityClock() {
                return activity;
            }
        });
    }

    /** A shard's generator: the strategy's first one is the reader's main output's. */
    private WatermarkGenerator<String> shard() {
        generator();
        return generator();
    }

    private static void sale(WatermarkGenerator<String> generator, long t, Output output) {
        generator.onEvent("{\"s\":7,\"t\":" + t + "}", t, output);
    }

    @Test
    void eventTimeIsTheTopLevelField() {
        assertEquals(1795500000123L, strategy.eventTime("{\"s\":7,\"t\":1795500000123}", 5));
        assertEquals(42, strategy.eventTime("{\"x\":{\"t\":1},\"l\":[{\"t\":2}],\"t\":42}", 5));
    }

    @Test
    void aRecordWithoutAReadableTimeKeepsItsArrivalTime() {
        for (String record : new String[] {"{\"s\":7}", "{\"t\":\"12\"}", "{\"t\":1.5}", "[1]",
                                           "not json", "", "{\"t\":"}) {
            assertEquals(5, strategy.eventTime(record, 5), record);
        }
    }

    @Test
    void progressMarkersNameTheirStoreSystem() {
        assertTrue(JsonEventTime.isProgress("{\"pos\":12,\"s\":7,\"t\":1}"));
        assertFalse(JsonEventTime.isProgress("{\"s\":7,\"pos\":12,\"t\":1}"));
        assertEquals(12, JsonEventTime.storeSystem("{\"pos\":12,\"s\":7,\"t\":1}"));
        assertEquals(-1, JsonEventTime.storeSystem("{\"pos\":\"x\",\"s\":7}"));
        assertEquals(-1, JsonEventTime.storeSystem("{\"pos\":99999999999}"));
    }

    @Test
    void theWatermarkRule() {
        // busy: newest sale less the bound
        assertEquals(8_999, JsonEventTime.watermark(10_000, Long.MAX_VALUE, false, 50_000,
                BOUND, HOLD));
        // held back by the oldest store system's progress ...
        assertEquals(4_999, JsonEventTime.watermark(10_000, 5_000, false, 50_000, BOUND, HOLD));
        // ... but never more than the hold behind the newest sale
        assertEquals(19_999, JsonEventTime.watermark(30_000, 5_000, false, 50_000, BOUND, HOLD));
        // quiet: the clock instead, when it is ahead of the newest sale
        assertEquals(48_999, JsonEventTime.watermark(10_000, Long.MAX_VALUE, true, 50_000,
                BOUND, HOLD));
        assertEquals(39_999, JsonEventTime.watermark(10_000, 5_000, true, 50_000, BOUND, HOLD));
        assertEquals(59_999, JsonEventTime.watermark(61_000, Long.MAX_VALUE, true, 50_000,
                BOUND, HOLD));
    }

    @Test
    void theHoldIsAtLeastTheBound() {
        JsonEventTime shortHold = new JsonEventTime("t", BOUND, IDLE, 10);
        generator(shortHold);
        WatermarkGenerator<String> generator = generator(shortHold);
        Output output = new Output();
        sale(generator, 10_000, output);
        generator.onPeriodicEmit(output);
        assertEquals(8_999, output.last());
    }

    @Test
    void aBusyShardsWatermarkFollowsItsNewestSaleAndNeverGoesBack() {
        WatermarkGenerator<String> generator = shard();
        Output output = new Output();
        sale(generator, 10_000, output);
        sale(generator, 9_500, output);
        generator.onPeriodicEmit(output);
        assertEquals(List.of("8999"), output.said);
        sale(generator, 9_000, output);
        generator.onPeriodicEmit(output);
        assertEquals(List.of("8999"), output.said, "an older sale emits nothing");
        sale(generator, 12_000, output);
        generator.onPeriodicEmit(output);
        assertEquals(10_999, output.last());
    }

    @Test
    void progressMarkersHoldTheWatermarkAndAreNoSales() {
        WatermarkGenerator<String> generator = shard();
        Output output = new Output();
        sale(generator, 10_000, output);
        generator.onEvent("{\"pos\":1,\"s\":7,\"t\":6000}", 6_000, output);
        generator.onEvent("{\"pos\":2,\"s\":8,\"t\":4000}", 4_000, output);
        generator.onEvent("{\"pos\":1,\"s\":7,\"t\":5000}", 5_000, output);  // older: ignored
        generator.onPeriodicEmit(output);
        assertEquals(3_999, output.last(), "the oldest store system's progress");
        generator.onEvent("{\"pos\":2,\"s\":8,\"t\":20000}", 20_000, output);
        generator.onPeriodicEmit(output);
        assertEquals(5_999, output.last(), "now store system 1's");
        // a marker far ahead moves neither the newest sale nor the quiet clock's start
        activity.advanceTime(IDLE - 1, TimeUnit.MILLISECONDS);
        generator.onEvent("{\"pos\":1,\"s\":7,\"t\":90000}", 90_000, output);
        generator.onPeriodicEmit(output);
        assertEquals(8_999, output.last());
        activity.advanceTime(1, TimeUnit.MILLISECONDS);
        long before = System.currentTimeMillis();
        generator.onPeriodicEmit(output);
        long after = System.currentTimeMillis();
        // quiet now: the wall clock's, still held by store system 2 (20 s), as far as the hold
        assertTrue(output.last() >= before - HOLD - 1 && output.last() <= after - HOLD - 1,
                output.said.toString());
    }

    @Test
    void aQuietShardFollowsTheWallClockEvenWithoutSales() {
        WatermarkGenerator<String> generator = shard();
        Output output = new Output();
        generator.onPeriodicEmit(output);
        assertEquals(List.of(), output.said, "not yet quiet, nothing to go by");
        activity.advanceTime(IDLE, TimeUnit.MILLISECONDS);
        long before = System.currentTimeMillis();
        generator.onPeriodicEmit(output);
        long after = System.currentTimeMillis();
        assertEquals(1, output.said.size());
        assertTrue(output.last() >= before - BOUND - 1 && output.last() <= after - BOUND - 1,
                output.said.toString());
    }

    @Test
    void theReadersMainOutputIsOnlyMarkedIdle() {
        WatermarkGenerator<String> main = generator();
        Output output = new Output();
        main.onPeriodicEmit(output);
        assertEquals(List.of(), output.said);
        activity.advanceTime(IDLE, TimeUnit.MILLISECONDS);
        main.onPeriodicEmit(output);
        assertEquals(List.of("idle"), output.said);
    }
    @Test
    void theEventTimeReadFromTheTextIsWhatTheParserReads() {
        String sale = "{\"e\":\"ev-1\",\"o\":\"S0042-000123\",\"s\":42,\"c\":\"online\","
                + "\"f\":\"delivery\",\"t\":1795000000123,\"cu\":{\"lat\":40.71},"
                + "\"l\":[[7,2,1299]],\"n\":2,\"r\":2598}";
        String[] read = {
            sale,
            "{\"pos\":3,\"s\":17,\"t\":1795000000000}",   // a POS progress marker
            "{\"t\":-5}", "{\"t\":0}", "{\"t\":-0}", "{\"a\":\"\",\"t\":7}",
            "{\"t\":1,\"t\":2}",                              // the first, as the parser
        };
        String[] leftToTheParser = {
            "{\"t\":1.5}", "{\"t\":1e3}", "{\"t\":\"12\"}", "{\"t\":012}", "{\"t\":-}",
            "{\"t\":1234567890123456789}",                    // 19 digits
            "{\"t\":99999999999999999999}",                   // beyond a long
            "{\"x\":{\"t\":5},\"t\":6}",                      // not top level
            "{\"x\":[1],\"t\":6}", "{\"x\":true,\"t\":6}", "{\"x\":null,\"t\":6}",
            "{\"x\":\"a\\\"b\",\"t\":6}",                     // an escape before it
            "{\"x\":\"\u00e9\",\"t\":6}",                      // not ASCII before it
            "{ \"t\":6}", "{\"t\" :6}", "{\"t\": 6}", "{\"t\":6 }",
            "{\"s\":1}", "{}", "", "[1]", "{\"t\":", "{\"t\":12", "not json",
        };
        for (String record : read) {
            long parsed = strategy.parsedEventTime(record, -1);
            assertTrue(parsed != -1, record);
            assertEquals(parsed, JsonEventTime.leadingInteger(record, "t"), record);
            assertEquals(parsed, strategy.eventTime(record, -1), record);
        }
        for (String record : leftToTheParser) {
            assertEquals(JsonEventTime.NOT_LEADING, JsonEventTime.leadingInteger(record, "t"),
                         record);
            assertEquals(strategy.parsedEventTime(record, -1), strategy.eventTime(record, -1),
                         record);
        }
    }
}
