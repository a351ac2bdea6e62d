-- Several rate limits per key, and project budgets: one unnamed limit stays in rl_requests / rl_window_ms; several
-- (or a named one) are a JSON list [[requests, window ms, name], ...] in rate_limits.
ALTER TABLE keys ADD COLUMN rate_limits jsonb;

-- Budgets shared by every key of a project: the list itself, and a copy with each key
-- (project_limits) so a key's record says everything its requests are charged against.
CREATE TABLE project_budgets (
    project_id  text PRIMARY KEY,
    limits      jsonb NOT NULL
);
ALTER TABLE keys ADD COLUMN project_limits jsonb;

-- Credits: the configuration with each key (credits), the count per lineage here. A refill
-- tops `remaining` up to its amount once per period counted from anchor_ms.
ALTER TABLE keys ADD COLUMN credits jsonb;
CREATE TABLE credits (
    lineage     text PRIMARY KEY,
    remaining   bigint NOT NULL,
    anchor_ms   bigint NOT NULL,
    refills     bigint NOT NULL DEFAULT 0
);

-- Several budgets of one request, checked and spent together in one statement: when every
-- counter has room, one request is counted in each; when any is full, none is. Answers the
-- status of the limit closest to refusing (accepted) or of the refusing limit that frees
-- last (refused). Counters are locked in a fixed order, so concurrent calls never deadlock.
CREATE FUNCTION hit_rate_limits(
    p_counters text[], p_limits integer[], p_windows bigint[], p_subs integer[],
    p_credits text, p_cost integer, p_amount integer, p_every bigint, p_app_now bigint
)
RETURNS TABLE (allowed boolean, remaining integer, retry_ms bigint, reset_ms bigint,
               which integer, credits_left bigint, exhausted boolean)
LANGUAGE plpgsql AS $fn$
DECLARE
    v_now      bigint := floor(extract(epoch FROM clock_timestamp()) * 1000);
    v_n        integer := coalesce(array_length(p_counters, 1), 0);
    v_left     bigint;
    v_anchor   bigint;
    v_done     bigint;
    v_periods  bigint;
    v_wait     bigint := 0;
    v_used     bigint[] := array_fill(0::bigint, ARRAY[v_n]);
    v_retry    bigint[] := array_fill(0::bigint, ARRAY[v_n]);
    v_reset    bigint[] := array_fill(0::bigint, ARRAY[v_n]);
    v_counter  text;
    v_logged   integer;
    v_counted  bigint;
    v_oldest   bigint;
    v_newest   bigint;
    v_first    bigint;
    v_last     bigint;
    v_width    bigint;
    v_best     integer := 0;
    i          integer;
BEGIN
    FOR v_counter IN SELECT unnest(p_counters) ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(hashtextextended('nowramp_rl:' || v_counter, 0));
    END LOOP;
    FOR i IN 1 .. v_n LOOP
        DELETE FROM rate_log r
            WHERE r.lineage = p_counters[i] AND r.at_ms <= v_now - p_windows[i];
        DELETE FROM rate_counts c WHERE c.lineage = p_counters[i]
            AND (c.bucket + 1) * c.width - 1 <= v_now - p_windows[i];
        SELECT count(*), min(r.at_ms), max(r.at_ms) INTO v_logged, v_oldest, v_newest
            FROM rate_log r WHERE r.lineage = p_counters[i];
        SELECT coalesce(sum(c.n), 0), min((c.bucket + 1) * c.width - 1),
               max((c.bucket + 1) * c.width - 1)
            INTO v_counted, v_first, v_last
            FROM rate_counts c WHERE c.lineage = p_counters[i];
        v_used[i] := v_logged + v_counted;
        IF v_used[i] >= p_limits[i] THEN
            IF v_counted = 0 THEN
                SELECT r.at_ms INTO v_oldest FROM rate_log r WHERE r.lineage = p_counters[i]
                    ORDER BY r.at_ms OFFSET (v_logged - p_limits[i]) LIMIT 1;
            ELSE
                v_oldest := least(coalesce(v_oldest, v_first), v_first);
                v_newest := greatest(coalesce(v_newest, v_last), v_last);
            END IF;
            v_retry[i] := greatest(v_oldest + p_windows[i] - v_now, 1);
            v_reset[i] := greatest(v_newest + p_windows[i] - v_now, 1);
            IF v_best = 0 OR v_retry[i] > v_retry[v_best] THEN
                v_best := i;
            END IF;
        END IF;
    END LOOP;
    IF p_credits IS NOT NULL THEN  -- the key's credits, refills due on the app's clock
        SELECT c.remaining, c.anchor_ms, c.refills INTO v_left, v_anchor, v_done
            FROM credits c WHERE c.lineage = p_credits FOR UPDATE;
        v_left := coalesce(v_left, 0);
        IF p_every > 0 AND v_anchor IS NOT NULL THEN
            v_periods := greatest(0, floor((p_app_now - v_anchor)::numeric / p_every));
            IF v_periods > v_done THEN
                v_left := greatest(v_left, p_amount);
                v_done := v_periods;
                UPDATE credits SET remaining = v_left, refills = v_done
                    WHERE lineage = p_credits;
            END IF;
            v_wait := v_anchor + (v_done + 1) * p_every - p_app_now;
        END IF;
        IF v_left < p_cost THEN  -- exhausted: nothing is spent
            RETURN QUERY SELECT false, 0, v_wait, 0::bigint, -1, v_left, true;
            RETURN;
        END IF;
    END IF;
    IF v_best > 0 THEN  -- refused by at least one: nothing is spent
        RETURN QUERY SELECT false, 0, v_retry[v_best], v_reset[v_best], v_best - 1,
            coalesce(v_left, -1), false;
        RETURN;
    END IF;
    IF p_credits IS NOT NULL THEN
        v_left := v_left - p_cost;  -- (under the row lock taken above)
        UPDATE credits SET remaining = v_left WHERE lineage = p_credits;
    END IF;
    FOR i IN 1 .. v_n LOOP
        IF p_subs[i] = 0 THEN
            INSERT INTO rate_log VALUES (p_counters[i], v_now);
        ELSE
            v_width := ceil(p_windows[i]::numeric / p_subs[i]);
            INSERT INTO rate_counts AS c VALUES (p_counters[i], v_now / v_width, v_width, 1)
                ON CONFLICT (lineage, bucket, width) DO UPDATE SET n = c.n + 1;
        END IF;
        IF v_best = 0 OR p_limits[i] - v_used[i] < p_limits[v_best] - v_used[v_best] THEN
            v_best := i;
        END IF;
    END LOOP;
    IF v_best = 0 THEN  -- credits only, no limit
        RETURN QUERY SELECT true, 0, 0::bigint, 0::bigint, -1, v_left, false;
        RETURN;
    END IF;
    RETURN QUERY SELECT true, (p_limits[v_best] - v_used[v_best] - 1)::integer, 0::bigint,
        p_windows[v_best], v_best - 1, coalesce(v_left, -1), false;
END
$fn$;
