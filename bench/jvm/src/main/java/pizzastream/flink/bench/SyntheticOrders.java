package pizzastream.flink.bench;

import java.io.Serializable;
import java.nio.charset.StandardCharsets;

/**
 * Realistic orders made from a sequence number, for benchmarks that must not be limited by
 * their source: deterministic (the same number always gives the same order), allocation-light
 * and about a microsecond per order, so a Python operator or a SQL query is what is measured.
 *
 * <p>The shape follows {@code simulation.traffic}: a store drawn by its traffic weight (the
 * caller passes the 2,000 cumulative weights of {@code reference_data.stores()}, so 80% of
 * orders go to 20% of stores), 80% online, the channel's fulfillment mix, 1-4 distinct active
 * products with quantities 1-3, catalog prices in cents. Event times start {@code lagMs}
 * before the generator opened and advance by {@code 1000 / eventsPerSecond} ms per order, so
 * the order rules accept them (neither stale nor future) and event-time windows see the
 * simulated traffic rate rather than the benchmark's.
 */
public final class SyntheticOrders implements Serializable {
    private static final long serialVersionUID = 1L;

    /** Lines per order 1..4, as {@code traffic.LINE_COUNT_WEIGHTS} (55/28/12/5). */
    private static final int[] LINE_CUM = {55, 83, 95, 100};
    /** Quantity per line 1..3, as {@code traffic.QUANTITY_WEIGHTS} (82/13/5). */
    private static final int[] QTY_CUM = {82, 95, 100};

    private final double[] storeCumulativeWeights;
    private final int[] productIds;
    private final long[] unitPriceCents;
    private final String runTag;

    /**
     * @param storeCumulativeWeights cumulative traffic weight of store ids 1..n, ending at 1.0
     * @param productIds the active products
     * @param unitPriceCents catalog price of each of {@code productIds}
     * @param runTag prefix of the order ids, so two runs never share ids
     */
    public SyntheticOrders(double[] storeCumulativeWeights, int[] productIds, long[] unitPriceCents,
                           String runTag) {
        if (productIds.length != unitPriceCents.length || productIds.length < 4) {
            throw new IllegalArgumentException("need at least 4 products, each with a price");
        }
        this.storeCumulativeWeights = storeCumulativeWeights.clone();
        this.productIds = productIds.clone();
        this.unitPriceCents = unitPriceCents.clone();
        this.runTag = runTag;
    }

    /** One order's fields; reused by the caller to avoid an allocation per order. */
    public static final class Order {
        public long seq;
        public int storeId;
        public boolean online;
        public String fulfillment;
        public long tsMs;
        public int lines;
        public final int[] productId = new int[4];
        public final int[] quantity = new int[4];
        public final long[] priceCents = new long[4];
        public double lat;
        public double lon;

        public int units() {
            int n = 0;
            for (int i = 0; i < lines; i++) {
                n += quantity[i];
            }
            return n;
        }

        public long revenueCents() {
            long r = 0;
            for (int i = 0; i < lines; i++) {
                r += quantity[i] * priceCents[i];
            }
            return r;
        }
    }

    /** SplitMix64: a well-mixed 64-bit value per (seq, stream). */
    private static long mix(long z) {
        z = (z ^ (z >>> 30)) * 0xbf58476d1ce4e5b9L;
        z = (z ^ (z >>> 27)) * 0x94d049bb133111ebL;
        return z ^ (z >>> 31);
    }

    /** Fills {@code o} with order number {@code seq} at event time {@code tsMs}. */
    public void fill(long seq, long tsMs, Order o) {
        long state = seq * 0x9e3779b97f4a7c15L;
        long r1 = mix(state += 0x9e3779b97f4a7c15L);
        long r2 = mix(state += 0x9e3779b97f4a7c15L);
        long r3 = mix(state + 0x9e3779b97f4a7c15L);
        o.seq = seq;
        o.tsMs = tsMs;
        o.storeId = drawStore((r1 >>> 11) * 0x1.0p-53);
        int pct = (int) ((r2 >>> 33) % 100);
        o.online = pct < 80;
        int fpct = (int) ((r2 >>> 8) & 0x7fffffffL) % 100;
        if (o.online) {
            o.fulfillment = fpct < 60 ? "delivery" : fpct < 95 ? "pickup" : "dine_in";
        } else {
            o.fulfillment = fpct < 60 ? "dine_in" : "pickup";
        }
        o.lines = draw(LINE_CUM, (int) ((r3 >>> 40) % 100));
        // distinct products: a random index per line, probing forward past repeats
        int n = productIds.length;
        long bits = r3;
        for (int picked = 0; picked < o.lines; picked++) {
            int idx = (int) ((bits >>> 8) & 0xffff) % n;
            bits = mix(bits);
            while (contains(o.productId, picked, productIds[idx])) {
                idx = (idx + 1) % n;
            }
            o.productId[picked] = productIds[idx];
            o.priceCents[picked] = unitPriceCents[idx];
            o.quantity[picked] = draw(QTY_CUM, (int) (((r1 >>> (3 + 7 * picked)) & 0x7f) % 100));
        }
        o.lat = 40.0 + ((r2 >>> 40) & 0xfff) / 4096.0;
        o.lon = -74.0 + ((r1 >>> 1) & 0x3ff) / 1024.0;
    }

    private static boolean contains(int[] values, int count, int value) {
        for (int i = 0; i < count; i++) {
            if (values[i] == value) {
                return true;
            }
        }
        return false;
    }

    private int drawStore(double u) {
        double[] cum = storeCumulativeWeights;
        int lo = 0;
        int hi = cum.length - 1;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (cum[mid] < u) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        return lo + 1;
    }

    private static int draw(int[] cumulative, int pct) {
        for (int i = 0; i < cumulative.length; i++) {
            if (pct < cumulative[i]) {
                return i + 1;
            }
        }
        return cumulative.length;
    }

    // ------------------------------------------------------------------ renderings

    /** The order id: {@code B<run>-<seq>}; unique per run. */
    public void orderId(Order o, StringBuilder sb) {
        sb.append('B').append(runTag).append('-').append(o.seq);
    }

    /** A UUID-shaped event id derived from the sequence number. */
    public static void eventId(Order o, StringBuilder sb) {
        long hi = mix(o.seq ^ 0x5DEECE66DL);
        long lo = mix(o.seq + 0x2545F4914F6CDD1DL);
        hex(sb, hi >>> 32, 8);
        sb.append('-');
        hex(sb, (hi >>> 16) & 0xffff, 4);
        sb.append('-');
        hex(sb, 0x4000 | (hi & 0x0fff), 4);
        sb.append('-');
        hex(sb, 0x8000 | ((lo >>> 48) & 0x3fff), 4);
        sb.append('-');
        hex(sb, lo & 0xffffffffffffL, 12);
    }

    private static final char[] HEX = "0123456789abcdef".toCharArray();

    private static void hex(StringBuilder sb, long value, int digits) {
        for (int shift = (digits - 1) * 4; shift >= 0; shift -= 4) {
            sb.append(HEX[(int) ((value >>> shift) & 0xf)]);
        }
    }

    /** ISO-8601 UTC with milliseconds, e.g. {@code 2026-11-24T18:05:31.123Z}. */
    public static void isoTime(long tsMs, StringBuilder sb) {
        long days = Math.floorDiv(tsMs, 86_400_000L);
        long msOfDay = Math.floorMod(tsMs, 86_400_000L);
        // civil-from-days (Howard Hinnant), proleptic Gregorian
        long z = days + 719_468;
        long era = Math.floorDiv(z, 146_097);
        long doe = z - era * 146_097;
        long yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        long y = yoe + era * 400;
        long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        long mp = (5 * doy + 2) / 153;
        long d = doy - (153 * mp + 2) / 5 + 1;
        long m = mp < 10 ? mp + 3 : mp - 9;
        if (m <= 2) {
            y++;
        }
        sb.append(y).append('-');
        two(sb, m);
        sb.append('-');
        two(sb, d);
        sb.append('T');
        two(sb, msOfDay / 3_600_000);
        sb.append(':');
        two(sb, (msOfDay / 60_000) % 60);
        sb.append(':');
        two(sb, (msOfDay / 1000) % 60);
        sb.append('.');
        long ms = msOfDay % 1000;
        sb.append((char) ('0' + ms / 100)).append((char) ('0' + (ms / 10) % 10))
                .append((char) ('0' + ms % 10));
        sb.append('Z');
    }

    private static void two(StringBuilder sb, long v) {
        sb.append((char) ('0' + v / 10)).append((char) ('0' + v % 10));
    }

    /** The contract's raw {@code orders} record (what the web layer sends). */
    public void rawJson(Order o, StringBuilder sb) {
        sb.append("{\"event_id\":\"");
        eventId(o, sb);
        sb.append("\",\"order_id\":\"");
        orderId(o, sb);
        sb.append("\",\"store_id\":").append(o.storeId)
                .append(",\"channel\":\"").append(o.online ? "online" : "in_store")
                .append("\",\"fulfillment\":\"").append(o.fulfillment)
                .append("\",\"ts\":\"");
        isoTime(o.tsMs, sb);
        sb.append('"');
        if ("delivery".equals(o.fulfillment)) {
            sb.append(",\"customer\":{\"lat\":").append(o.lat).append(",\"lon\":").append(o.lon)
                    .append('}');
        }
        sb.append(",\"items\":[");
        for (int i = 0; i < o.lines; i++) {
            if (i > 0) {
                sb.append(',');
            }
            sb.append("{\"product_id\":").append(o.productId[i]).append(",\"quantity\":")
                    .append(o.quantity[i]).append('}');
        }
        sb.append("]}");
    }

    /** The compact enriched order of {@code docs/streams.md} ({@code EnrichedOrder.to_json}). */
    public void enrichedJson(Order o, StringBuilder sb) {
        sb.append("{\"e\":\"");
        eventId(o, sb);
        sb.append("\",\"o\":\"");
        orderId(o, sb);
        sb.append("\",\"s\":").append(o.storeId)
                .append(",\"c\":\"").append(o.online ? "online" : "in_store")
                .append("\",\"f\":\"").append(o.fulfillment)
                .append("\",\"t\":").append(o.tsMs)
                .append(",\"l\":[");
        for (int i = 0; i < o.lines; i++) {
            if (i > 0) {
                sb.append(',');
            }
            sb.append('[').append(o.productId[i]).append(',').append(o.quantity[i]).append(',')
                    .append(o.priceCents[i]).append(']');
        }
        sb.append(']');
        if ("delivery".equals(o.fulfillment)) {
            sb.append(",\"g\":[").append(o.lat).append(',').append(o.lon).append(']');
        }
        sb.append('}');
    }

    /** The {@code sales} record: the enriched order plus {@code n} (items) and {@code r}. */
    public void saleJson(Order o, StringBuilder sb) {
        enrichedJson(o, sb);
        sb.setLength(sb.length() - 1);
        sb.append(",\"n\":").append(o.units()).append(",\"r\":").append(o.revenueCents())
                .append('}');
    }

    public static byte[] utf8(StringBuilder sb) {
        return sb.toString().getBytes(StandardCharsets.UTF_8);
    }
}
