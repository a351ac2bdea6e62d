-- nowramp_auth schema, version 1. Applied inside one transaction with search_path set to the
-- store's schema (nowramp_auth by default), by `nowramp-auth db upgrade` or upgrade=True.

CREATE TABLE keys (
    id            text PRIMARY KEY,
    lineage       text NOT NULL,
    key_type      text NOT NULL CHECK (key_type IN ('live', 'test')),
    digest        text NOT NULL,
    hint          text NOT NULL,
    name          text NOT NULL DEFAULT '',
    project_id    text,
    scopes        text[] NOT NULL,
    allowed_ips   text[] NOT NULL,
    metadata      jsonb NOT NULL DEFAULT '{}',
    rl_requests   integer,
    rl_window_ms  bigint,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz,
    revoked_at    timestamptz,
    rotated_from  text,
    rotated_to    text,
    lineage_id    text
);
CREATE INDEX keys_by_project ON keys (project_id, created_at);

CREATE TABLE sessions (
    id           text PRIMARY KEY,
    key_id       text NOT NULL,
    project_id   text NOT NULL,
    customer_id  text,
    scopes       text[] NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    digest       text NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- Usage, written behind: totals per key, and accepted requests ('') and refusals (by code)
-- per key and hour (epoch hours), for the dashboard's chart.
CREATE TABLE usage (
    key_id         text PRIMARY KEY,
    request_count  bigint NOT NULL DEFAULT 0,
    last_used_at   timestamptz
);
CREATE TABLE usage_hours (
    key_id  text NOT NULL,
    hour    bigint NOT NULL,
    code    text NOT NULL,
    n       bigint NOT NULL,
    PRIMARY KEY (key_id, hour, code)
);

-- Rate limits of key lineages, on the database's clock: an exact log up to 1,000 requests
-- per window, counts per sub-window above. hit_rate_limit is one statement per request.
CREATE TABLE rate_log (
    lineage  text NOT NULL,
    at_ms    bigint NOT NULL
);
CREATE INDEX rate_log_by_lineage ON rate_log (lineage, at_ms);
CREATE TABLE rate_counts (
    lineage  text NOT NULL,
    bucket   bigint NOT NULL,
    width    bigint NOT NULL,
    n        bigint NOT NULL,
    PRIMARY KEY (lineage, bucket, width)
);

CREATE FUNCTION hit_rate_limit(p_lineage text, p_limit integer, p_window bigint, p_sub integer)
RETURNS TABLE (allowed boolean, remaining integer, retry_ms bigint, reset_ms bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_now     bigint := floor(extract(epoch FROM clock_timestamp()) * 1000);
    v_width   bigint;
    v_logged  integer;
    v_counted bigint;
    v_oldest  bigint;
    v_newest  bigint;
    v_first   bigint;
    v_last    bigint;
BEGIN
    -- One budget per lineage, serialised: concurrent calls of one lineage queue here.
    PERFORM pg_advisory_xact_lock(hashtextextended('nowramp_rl:' || p_lineage, 0));
    DELETE FROM rate_log r WHERE r.lineage = p_lineage AND r.at_ms <= v_now - p_window;
    -- A sub-window's requests count as made at its end: refused early, never late.
    DELETE FROM rate_counts c
        WHERE c.lineage = p_lineage AND (c.bucket + 1) * c.width - 1 <= v_now - p_window;
    SELECT count(*), min(r.at_ms), max(r.at_ms) INTO v_logged, v_oldest, v_newest
        FROM rate_log r WHERE r.lineage = p_lineage;
    SELECT coalesce(sum(c.n), 0), min((c.bucket + 1) * c.width - 1),
           max((c.bucket + 1) * c.width - 1)
        INTO v_counted, v_first, v_last
        FROM rate_counts c WHERE c.lineage = p_lineage;
    IF v_logged + v_counted < p_limit THEN
        IF p_sub = 0 THEN
            INSERT INTO rate_log VALUES (p_lineage, v_now);
        ELSE
            v_width := ceil(p_window::numeric / p_sub);
            INSERT INTO rate_counts AS c VALUES (p_lineage, v_now / v_width, v_width, 1)
                ON CONFLICT (lineage, bucket, width) DO UPDATE SET n = c.n + 1;
        END IF;
        RETURN QUERY SELECT true, (p_limit - v_logged - v_counted - 1)::integer, 0::bigint,
            p_window;
        RETURN;
    END IF;
    -- Refused: room comes back when enough of the oldest requests have left the window.
    IF v_counted = 0 THEN
        SELECT r.at_ms INTO v_oldest FROM rate_log r WHERE r.lineage = p_lineage
            ORDER BY r.at_ms OFFSET (v_logged - p_limit) LIMIT 1;
    ELSE
        v_oldest := least(coalesce(v_oldest, v_first), v_first);
        v_newest := greatest(coalesce(v_newest, v_last), v_last);
    END IF;
    RETURN QUERY SELECT false, 0, greatest(v_oldest + p_window - v_now, 1),
        greatest(v_newest + p_window - v_now, 1);
END
$fn$;

-- Dashboard accounts (kept) and sign-in sessions and throttles (expiring).
CREATE TABLE dashboard_items (
    kind        text NOT NULL,
    item_id     text NOT NULL,
    value       text NOT NULL,
    expires_at  timestamptz,
    PRIMARY KEY (kind, item_id)
);
CREATE TABLE attempts (
    bucket  text NOT NULL,
    ticket  text NOT NULL,
    at_ms   bigint NOT NULL,
    PRIMARY KEY (bucket, ticket)
);

CREATE FUNCTION take_attempt(p_bucket text, p_limit integer, p_window bigint, p_ticket text)
RETURNS boolean LANGUAGE plpgsql AS $fn$
DECLARE
    now_ms bigint := floor(extract(epoch FROM clock_timestamp()) * 1000);
    taken  integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('nowramp_at:' || p_bucket, 0));
    DELETE FROM attempts WHERE bucket = p_bucket AND at_ms <= now_ms - p_window;
    SELECT count(*) INTO taken FROM attempts WHERE bucket = p_bucket;
    IF taken >= p_limit THEN
        RETURN false;
    END IF;
    INSERT INTO attempts VALUES (p_bucket, p_ticket, now_ms);
    RETURN true;
END
$fn$;

-- The audit log (PostgresAuditLog): indexed per project and per key, so a partner's page
-- costs the same however many events other projects have.
CREATE TABLE audit_events (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    type        text NOT NULL,
    key_id      text,
    project_id  text,
    code        text,
    client_ip   text,
    method      text,
    path        text,
    session_id  text,
    actor       text,
    detail      text
);
CREATE INDEX audit_by_project ON audit_events (project_id, id DESC);
CREATE INDEX audit_by_key ON audit_events (key_id, id DESC);
