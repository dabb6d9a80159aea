-- Step 1 (user_version 0 -> 1): the first schema, frozen. Never edit a released step:
-- add a new numbered file and change schema.sql to match its result.

-- Key/value facts about this database (creation time, instance id).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- People and service accounts. Written by the users API and first start. A deleted
-- user keeps its row (requests and reviews point at it) but frees its name.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    username      TEXT NOT NULL,
    display_name  TEXT,
    password_hash TEXT,              -- argon2id PHC string; NULL: token-only account
    admin         INTEGER NOT NULL DEFAULT 0 CHECK (admin IN (0, 1)),
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at    INTEGER NOT NULL,
    deleted_at    INTEGER,
    email              TEXT,          -- where notifications by email go (approvers, requesters)
    slack_user_id      TEXT,          -- Slack user (U…) whose button clicks act as this user; set by an admin
    mattermost_user_id TEXT           -- Mattermost user id, the same for Mattermost buttons
) STRICT;
CREATE UNIQUE INDEX users_live_name ON users (username) WHERE deleted_at IS NULL;
-- One chat identity maps to one live user, never two.
CREATE UNIQUE INDEX users_live_slack ON users (slack_user_id) WHERE deleted_at IS NULL AND slack_user_id IS NOT NULL;
CREATE UNIQUE INDEX users_live_mattermost ON users (mattermost_user_id) WHERE deleted_at IS NULL AND mattermost_user_id IS NOT NULL;

-- Named sets of users (`dba-team`, `security`). Written by the groups API.
CREATE TABLE groups (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
) STRICT;

-- Who belongs to which group, now. Read at the moment of every review decision.
CREATE TABLE group_members (
    group_id INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id  INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    added_at INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX group_members_by_user ON group_members (user_id, group_id);

-- API tokens: only the SHA-256 of the secret is kept; the secret is shown once.
-- scope 'api' acts as its user; 'check' may only ask /access/check; 'metrics' only /metrics.
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,   -- tok_…, public, used to list and revoke
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    scope        TEXT NOT NULL CHECK (scope IN ('api', 'check', 'metrics')),
    token_hash   BLOB NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    UNIQUE (user_id, name)
) STRICT;

-- Browser sessions from POST /api/v1/login: SHA-256 of the cookie, and the CSRF token
-- every state-changing cookie call must echo in X-CSRF-Token.
CREATE TABLE web_sessions (
    id_hash    BLOB PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX web_sessions_by_user ON web_sessions (user_id);

-- Protected resources and the access policy each carries. Written by the connections
-- API. A deleted connection keeps its row for the requests that point at it.
CREATE TABLE connections (
    id                  INTEGER PRIMARY KEY,
    name                TEXT NOT NULL,
    kind                TEXT NOT NULL CHECK (kind IN ('postgres', 'tcp', 'generic')),
    target              TEXT,
    min_approvals       INTEGER NOT NULL CHECK (min_approvals >= 1),
    default_duration    INTEGER NOT NULL CHECK (default_duration >= 1),
    max_duration        INTEGER NOT NULL CHECK (max_duration >= default_duration),
    pending_ttl         INTEGER NOT NULL CHECK (pending_ttl >= 1),
    auto_approve_admins INTEGER NOT NULL CHECK (auto_approve_admins IN (0, 1)),
    require_reason      INTEGER NOT NULL CHECK (require_reason IN (0, 1)),
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    deleted_at          INTEGER
) STRICT;
CREATE UNIQUE INDEX connections_live_name ON connections (name) WHERE deleted_at IS NULL;

-- The approval groups of each connection, in the order the admin gave them. A group
-- in use cannot be deleted (RESTRICT): a policy must never lose a gate silently.
CREATE TABLE connection_groups (
    connection_id INTEGER NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    group_id      INTEGER NOT NULL REFERENCES groups (id) ON DELETE RESTRICT,
    position      INTEGER NOT NULL,
    PRIMARY KEY (connection_id, group_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX connection_groups_by_group ON connection_groups (group_id);

-- Access requests. `seq` orders them (newest first in lists); `id` is public (req_…).
-- The CHECK ties each status to the times it must and must not have, so no crash
-- can leave a half-made transition behind.
CREATE TABLE requests (
    seq           INTEGER PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    user_id       INTEGER NOT NULL REFERENCES users (id),
    connection_id INTEGER NOT NULL REFERENCES connections (id),
    status        TEXT NOT NULL,
    duration      INTEGER NOT NULL CHECK (duration >= 1),
    reason        TEXT,
    created_at    INTEGER NOT NULL,
    pending_until INTEGER NOT NULL,
    approved_at   INTEGER,
    expires_at    INTEGER,
    ended_at      INTEGER,
    ended_by      TEXT,
    end_reason    TEXT,
    approved_by   TEXT,              -- JSON {"required":k,"counted":{group:[user…]}}: who counted, frozen at approval
    warned_at     INTEGER,           -- when "expiring in 10 minutes" was sent (once per grant)
    CHECK (
        (status = 'PENDING' AND approved_at IS NULL AND expires_at IS NULL AND ended_at IS NULL)
        OR (status = 'APPROVED' AND approved_at IS NOT NULL AND expires_at IS NOT NULL AND ended_at IS NULL)
        OR (status IN ('EXECUTED', 'REVOKED') AND approved_at IS NOT NULL AND expires_at IS NOT NULL AND ended_at IS NOT NULL)
        OR (status IN ('REJECTED', 'CANCELLED') AND approved_at IS NULL AND ended_at IS NOT NULL)
    )
) STRICT;
CREATE INDEX requests_by_status_expiry ON requests (status, expires_at);
CREATE INDEX requests_by_status_pending ON requests (status, pending_until);
CREATE INDEX requests_by_user ON requests (user_id, connection_id, status);
CREATE INDEX requests_by_connection ON requests (connection_id, status);

-- One reviewer's approve or reject on one request; at most one each (two-person rule).
CREATE TABLE reviews (
    request_seq INTEGER NOT NULL REFERENCES requests (seq),
    reviewer_id INTEGER NOT NULL REFERENCES users (id),
    decision    TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
    comment     TEXT,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (request_seq, reviewer_id)
) STRICT, WITHOUT ROWID;

-- `jitgate connect` runs on a grant (sess_…). Written by the gateway.
CREATE TABLE sessions (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    request_seq INTEGER NOT NULL REFERENCES requests (seq),
    user_id     INTEGER NOT NULL REFERENCES users (id),
    client_addr TEXT,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    end_reason  TEXT
) STRICT;
CREATE INDEX sessions_by_request ON sessions (request_seq);

-- One TCP connection carried through a tunnel of a session (the gateway writes it):
-- when, from where, how it ended, and the bytes each way.
CREATE TABLE streams (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    session_seq INTEGER NOT NULL REFERENCES sessions (seq),
    client_addr TEXT,
    target      TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER,
    end_reason  TEXT,
    bytes_up    INTEGER NOT NULL DEFAULT 0,   -- client to target
    bytes_down  INTEGER NOT NULL DEFAULT 0    -- target to client
) STRICT;
CREATE INDEX streams_by_session ON streams (session_seq);

-- SQL a PostgreSQL client sent through a stream (simple-query `Q` and extended
-- `Parse`), bounded in size; startup and authentication messages are never stored.
CREATE TABLE stream_queries (
    stream_seq INTEGER NOT NULL REFERENCES streams (seq),
    at         INTEGER NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('query', 'parse')),
    sql        TEXT NOT NULL,
    truncated  INTEGER NOT NULL CHECK (truncated IN (0, 1))
) STRICT;
CREATE INDEX stream_queries_by_stream ON stream_queries (stream_seq, at);

-- Events of the lifecycle waiting to reach hooks and notifications (the outbox),
-- written in the same transaction as the transition, so none is ever lost.
CREATE TABLE outbox (
    seq        INTEGER PRIMARY KEY,
    event      TEXT NOT NULL,              -- request.created, request.approved, …
    request_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    dispatched INTEGER NOT NULL DEFAULT 0 CHECK (dispatched IN (0, 1))
) STRICT;
CREATE INDEX outbox_undispatched ON outbox (dispatched, seq);

-- One event's delivery to one sink (a configured hook, a notification channel).
-- `running` is written before a hook runs: after a crash it becomes `interrupted`,
-- never run again (at most once), and stays on record.
CREATE TABLE outbox_deliveries (
    event_seq  INTEGER NOT NULL REFERENCES outbox (seq),
    sink       TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done', 'failed', 'interrupted')),
    attempts   INTEGER NOT NULL DEFAULT 0,
    next_at    INTEGER NOT NULL,
    last_error TEXT,
    PRIMARY KEY (event_seq, sink)
) STRICT;
CREATE INDEX outbox_deliveries_due ON outbox_deliveries (state, next_at);
-- Notification sinks deliver one event at a time, oldest first: the head of each sink.
CREATE INDEX outbox_deliveries_by_sink ON outbox_deliveries (sink, state, event_seq);

-- Signatures of chat actions already applied (Slack's X-Slack-Signature), kept for
-- the replay window, so a captured click cannot be sent again. Written by the
-- integration endpoints; rows older than the window are pruned as new ones come.
CREATE TABLE chat_action_replays (
    signature TEXT PRIMARY KEY,
    seen_at   INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Append-only, hash-chained record of every state change and login. Each event's
-- hash covers its fields and the previous hash; audit_head anchors the last one so a
-- deleted tail is detected too. Written in the same transaction as the change.
CREATE TABLE audit_events (
    seq       INTEGER PRIMARY KEY,
    at        INTEGER NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    detail    TEXT NOT NULL,         -- compact JSON object
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
) STRICT;
CREATE INDEX audit_events_by_target ON audit_events (target);
CREATE TRIGGER audit_events_append_only_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_events_append_only_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;

CREATE TABLE audit_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
) STRICT;
