-- One token bucket per rate-limited subscription, shared by every node.
CREATE TABLE rate_buckets (
    subscription  text PRIMARY KEY REFERENCES subscriptions (name) ON DELETE CASCADE,
    tokens        double precision NOT NULL,
    -- Milliseconds, as the claims' `now`.
    refilled_at   bigint NOT NULL
);
