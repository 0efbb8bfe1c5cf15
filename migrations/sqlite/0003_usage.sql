-- Usage reported by proxies, summed per minute: one row per (minute, route, consumer, status
-- class), plus one latency-histogram row per bucket upper bound. Rows only ever grow by
-- upserts that add (so replicas sharing a database may write the same row concurrently) and
-- are pruned by age (--usage-retention). The primary keys lead with the minute, so they also
-- serve the time-range queries of GET /api/v1/usage and the pruning.
CREATE TABLE usage_counters (
    minute_unix_s  BIGINT   NOT NULL,
    route          TEXT     NOT NULL,
    -- '' for unauthenticated traffic.
    consumer       TEXT     NOT NULL,
    status_class   INTEGER  NOT NULL CHECK (status_class BETWEEN 1 AND 5),
    requests       BIGINT   NOT NULL,
    bytes_in       BIGINT   NOT NULL,
    bytes_out      BIGINT   NOT NULL,
    -- Sum of the requests' latencies (for means).
    latency_sum_us BIGINT   NOT NULL,
    PRIMARY KEY (minute_unix_s, route, consumer, status_class)
);

-- `count` requests of that key took at most `bound_us` (and more than the next lower bound).
CREATE TABLE usage_latency (
    minute_unix_s  BIGINT   NOT NULL,
    route          TEXT     NOT NULL,
    consumer       TEXT     NOT NULL,
    status_class   INTEGER  NOT NULL CHECK (status_class BETWEEN 1 AND 5),
    bound_us       BIGINT   NOT NULL,
    count          BIGINT   NOT NULL,
    PRIMARY KEY (minute_unix_s, route, consumer, status_class, bound_us)
);

-- Exactly-once ingestion: the highest usage batch sequence stored per proxy process
-- (instance). A resent batch at or below it was already counted. -1: none yet.
CREATE TABLE usage_instances (
    instance_id    TEXT     PRIMARY KEY,
    node_id        TEXT     NOT NULL,
    last_sequence  BIGINT   NOT NULL,
    updated_at_ms  BIGINT   NOT NULL
);
CREATE INDEX usage_instances_by_update ON usage_instances (updated_at_ms);
