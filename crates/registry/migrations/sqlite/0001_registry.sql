-- Registry schema for SQLite: prompts, immutable versions, labels, deployments, metrics,
-- experiments and the hash-chained audit log. Timestamps are Unix milliseconds.
CREATE TABLE prompts (
    name TEXT PRIMARY KEY,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE prompt_versions (
    prompt TEXT NOT NULL REFERENCES prompts(name),
    version TEXT NOT NULL,
    major BIGINT NOT NULL,
    minor BIGINT NOT NULL,
    patch BIGINT NOT NULL,
    content_hash TEXT NOT NULL,
    content TEXT NOT NULL,
    status TEXT NOT NULL,
    author TEXT NOT NULL,
    message TEXT,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (prompt, version),
    UNIQUE (prompt, major, minor, patch),
    UNIQUE (prompt, content_hash)
);

CREATE TRIGGER prompt_versions_immutable
BEFORE UPDATE OF prompt, version, major, minor, patch, content_hash, content, author, message, created_at_ms
ON prompt_versions
BEGIN
    SELECT RAISE(ABORT, 'prompt versions are immutable');
END;

CREATE TABLE labels (
    prompt TEXT NOT NULL REFERENCES prompts(name),
    label TEXT NOT NULL,
    version TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (prompt, label),
    FOREIGN KEY (prompt, version) REFERENCES prompt_versions(prompt, version)
);

CREATE TABLE deployments (
    prompt TEXT PRIMARY KEY REFERENCES prompts(name),
    stable TEXT NOT NULL,
    candidate TEXT,
    candidate_fraction DOUBLE PRECISION NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    FOREIGN KEY (prompt, stable) REFERENCES prompt_versions(prompt, version),
    FOREIGN KEY (prompt, candidate) REFERENCES prompt_versions(prompt, version)
);

CREATE TABLE version_metrics (
    prompt TEXT NOT NULL,
    version TEXT NOT NULL,
    requests BIGINT NOT NULL,
    successes BIGINT NOT NULL,
    parse_errors BIGINT NOT NULL,
    validation_errors BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cost_total DOUBLE PRECISION NOT NULL,
    latency_sum_ms DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (prompt, version)
);

CREATE TABLE latency_buckets (
    prompt TEXT NOT NULL,
    version TEXT NOT NULL,
    bucket BIGINT NOT NULL,
    count BIGINT NOT NULL,
    PRIMARY KEY (prompt, version, bucket)
);

CREATE TABLE experiments (
    name TEXT PRIMARY KEY,
    prompt TEXT NOT NULL REFERENCES prompts(name),
    arms TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE experiment_outcomes (
    experiment TEXT NOT NULL REFERENCES experiments(name),
    arm BIGINT NOT NULL,
    unit_id TEXT NOT NULL,
    success BIGINT,
    score DOUBLE PRECISION,
    at_ms BIGINT NOT NULL
);

CREATE INDEX experiment_outcomes_by_experiment ON experiment_outcomes (experiment, arm);

CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    prompt TEXT,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

CREATE INDEX audit_log_by_prompt ON audit_log (prompt, seq);

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
