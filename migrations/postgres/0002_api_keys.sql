-- API keys of consumers. Only a SHA-256 of each key is kept; the key itself is shown once,
-- when it is created. Keys live outside the consumer's spec history on purpose: rolling the
-- config back to an earlier revision must never bring a revoked key back.
CREATE TABLE api_keys (
    id            TEXT   PRIMARY KEY,
    consumer      TEXT   NOT NULL,
    sha256        TEXT   NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX api_keys_by_consumer ON api_keys (consumer);
