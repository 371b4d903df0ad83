//! The conformance suite against PostgreSQL, each test in a schema of its
//! own. Reads REDRIVE_TEST_DATABASE_URL; without it every test says it is
//! skipped and passes.
//! The whole suite runs here, as on SQLite.

use redrive_store::PostgresStore;
use redrive_store::conformance::t0;
use redrive_store::postgres::testing::TestSchema;

async fn postgres() -> (Option<PostgresStore>, Option<TestSchema>) {
    let Some(url) = TestSchema::database_url("postgres conformance") else {
        return (None, None);
    };
    let schema = TestSchema::create(&url).await.expect("a test schema");
    let store = PostgresStore::connect(&format!("{}&pool_size=4", schema.url), t0())
        .await
        .expect("the store opens");
    (Some(store), Some(schema))
}

redrive_store::conformance_tests!(@tests postgres();
    topics_are_created_listed_and_deleted,
    topic_with_subscriptions_cannot_be_deleted,
    subscriptions_are_created_updated_and_deleted,
    publish_fans_out_to_matching_subscriptions,
    duplicate_events_are_reported_and_not_fanned_out,
    publish_to_unknown_topic_is_not_found,
    claims_take_only_due_deliveries_up_to_each_limit,
    completions_apply_retry_delivered_and_failed,
    stale_completion_keeps_attempt_but_not_state,
    expired_leases_are_rescued_as_interrupted,
    deliveries_page_newest_first_with_filters,
    retry_now_schedules_failed_deliveries_but_not_in_flight,
    deleting_a_subscription_removes_its_deliveries,
    a_failed_delivery_is_dead_lettered_in_the_same_write,
    a_subscription_without_dead_letter_topic_only_announces,
    topics_built_in_or_dead_lettered_to_cannot_be_deleted,
    retention_fails_deliveries_still_undelivered,
    cancel_fails_only_a_scheduled_delivery,
    redrive_moves_matching_deliveries_with_a_fresh_budget,
    journal_pages_oldest_first_and_reports_purges,
    purge_removes_finished_history_and_unreferenced_events,
    tokens_are_created_read_listed_and_deleted,
    signing_secrets_are_kept_rotated_and_deleted_with_their_subscription,
    new_subscriptions_are_healthy_and_not_paused,
    completions_count_attempts_by_outcome_per_minute,
    health_changes_compare_and_set_and_announce_on_the_system_topic,
    paused_and_disabled_subscriptions_get_no_claims,
    old_attempt_counts_are_pruned_and_forgotten_with_their_subscription,
    retention_still_ends_deliveries_of_paused_and_disabled_subscriptions,
    released_claims_are_due_at_once_with_the_attempt_interrupted,
    queue_stats_count_due_retries_and_in_flight,
    readiness_reports_a_fully_migrated_schema,
    console_search_filters_newest_first,
    console_search_pages_without_gaps_or_repeats,
    console_counts_deliveries_by_state_since,
    console_buckets_delivered_and_failed_by_end_time,
);
