-- Push backoff became a subscription setting, off unless chosen; the
-- presets that bring it keep it on for subscriptions made before.
UPDATE subscriptions SET spec = json_set(spec, '$.push_backoff', json('true'))
 WHERE json_extract(spec, '$.retry_policy.preset') IN ('pubsub', 'eventarc')
   AND json_type(spec, '$.push_backoff') IS NULL;
