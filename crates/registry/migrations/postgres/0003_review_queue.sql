-- Retrieved documents the guard flagged, held once per distinct content until reviewed.
CREATE TABLE review_queue (
    id BIGSERIAL PRIMARY KEY,
    content_sha256 TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    content TEXT NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    reasons TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    request_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    hits BIGINT NOT NULL DEFAULT 1,
    resolved_by TEXT,
    resolved_at_ms BIGINT,
    note TEXT
);

CREATE INDEX review_queue_status ON review_queue (status, id);
