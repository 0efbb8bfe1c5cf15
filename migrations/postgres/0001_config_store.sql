-- Config store: current resources, their references, and the global revision history.
-- Resource specs are JSON validated by the control plane's model layer.

CREATE TABLE revisions (
    number        BIGINT PRIMARY KEY,
    created_at_ms BIGINT NOT NULL,
    actor         TEXT   NOT NULL,
    -- JSON: [{"op": "put" | "delete", "kind": "...", "name": "..."}], plus rollback origin.
    summary       TEXT   NOT NULL
);

CREATE TABLE resources (
    kind          TEXT   NOT NULL,
    name          TEXT   NOT NULL,
    version       BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    spec          TEXT   NOT NULL,
    -- JSON: [{"field": "...", "kind": "...", "name": "..."}]
    refs          TEXT   NOT NULL,
    PRIMARY KEY (kind, name)
);

-- One row per reference, so "who uses this cluster" is an index lookup.
CREATE TABLE resource_refs (
    from_kind TEXT NOT NULL,
    from_name TEXT NOT NULL,
    to_kind   TEXT NOT NULL,
    to_name   TEXT NOT NULL,
    PRIMARY KEY (from_kind, from_name, to_kind, to_name)
);
CREATE INDEX resource_refs_by_target ON resource_refs (to_kind, to_name);

-- The value of every changed resource at every revision (spec NULL: deleted), from which the
-- config at any revision and the changes since any revision are rebuilt.
CREATE TABLE resource_history (
    revision BIGINT NOT NULL,
    kind     TEXT   NOT NULL,
    name     TEXT   NOT NULL,
    spec     TEXT,
    refs     TEXT,
    PRIMARY KEY (revision, kind, name)
);
CREATE INDEX resource_history_by_resource ON resource_history (kind, name, revision);
