-- Fleet-wide quota accounting: per quota, consumer ('' for unauthenticated requests) and
-- window (its first second, Unix; calendar-aligned UTC minute, hour or day), the tokens
-- granted to proxies and the requests they report having let through (`unleased`: of those,
-- the ones let through without a lease while the control plane was unreachable). A grant
-- locks its row for its transaction, so replicas sharing a database never grant past the
-- limit; consumption only grows, by upserts that add. Windows that have ended are pruned with
-- the usage (--usage-retention).
CREATE TABLE quota_windows (
    quota               TEXT   NOT NULL,
    consumer            TEXT   NOT NULL,
    window_start_unix_s BIGINT NOT NULL,
    granted             BIGINT NOT NULL,
    used                BIGINT NOT NULL,
    unleased            BIGINT NOT NULL,
    updated_at_ms       BIGINT NOT NULL,
    PRIMARY KEY (quota, consumer, window_start_unix_s)
);
CREATE INDEX quota_windows_by_window ON quota_windows (window_start_unix_s);
