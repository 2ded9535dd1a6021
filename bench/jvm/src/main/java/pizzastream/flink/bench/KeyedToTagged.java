package pizzastream.flink.bench;

import java.nio.charset.StandardCharsets;
import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.types.Row;

/**
 * Chains order_enrichment into inventory_windowing inside one benchmark job: an enriched
 * order {@code Row(partition_key, payload)} becomes {@code Row(partition_key, Row("o", bytes))},
 * what {@code KeyedRawRecordSchema} makes of the {@code orders-enriched} record in production.
 */
public final class KeyedToTagged implements MapFunction<Row, Row> {
    private static final long serialVersionUID = 1L;

    @Override
    public Row map(Row keyed) {
        String payload = String.valueOf(keyed.getField(1));
        return Row.of(keyed.getField(0), Row.of("o", payload.getBytes(StandardCharsets.UTF_8)));
    }
}
