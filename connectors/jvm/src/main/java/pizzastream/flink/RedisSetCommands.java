package pizzastream.flink;

import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.types.Row;

/**
 * {@code Row(id, value)} into the Redis command {@code SET <prefix><id> value} for
 * {@link RedisSink}: the key layout stays with connectors/redis_store.py, which passes its
 * prefix.
 */
public final class RedisSetCommands implements MapFunction<Row, Row> {
    private static final long serialVersionUID = 1L;

    private final String keyPrefix;

    public RedisSetCommands(String keyPrefix) {
        this.keyPrefix = keyPrefix;
    }

    @Override
    public Row map(Row record) {
        return Row.of("SET", keyPrefix + record.getField(0), "", record.getField(1));
    }
}
