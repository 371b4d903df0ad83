-- Keeps every secret replaced by a rotation within its grace period (a
-- bounded list), not just the last one.
ALTER TABLE signing_secrets ADD COLUMN previous_secrets TEXT NOT NULL DEFAULT '[]';
UPDATE signing_secrets
    SET previous_secrets = json_array(json_object('secret', previous, 'until', previous_until))
    WHERE previous IS NOT NULL AND previous_until IS NOT NULL;
ALTER TABLE signing_secrets DROP COLUMN previous;
ALTER TABLE signing_secrets DROP COLUMN previous_until;
