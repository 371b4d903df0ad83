-- Push backoff became a subscription setting, off unless chosen; the
-- presets that bring it keep it on for subscriptions made before.
UPDATE subscriptions SET spec = jsonb_set(spec::jsonb, '{push_backoff}', 'true')::text
 WHERE spec::jsonb -> 'retry_policy' ->> 'preset' IN ('pubsub', 'eventarc')
   AND NOT (spec::jsonb ? 'push_backoff');
