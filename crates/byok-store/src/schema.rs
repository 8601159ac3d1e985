//! Diesel table definitions, written once for both backends with portable
//! SQL types only (`Text`, `Binary`, `BigInt`, `Integer`, `Timestamp`).

diesel::table! {
    users (id) {
        id -> Text,
        created_at -> Timestamp,
        disabled_at -> Nullable<Timestamp>,
        limits -> Nullable<Text>,
    }
}

diesel::table! {
    alert_outbox (id) {
        id -> BigInt,
        created_at -> Timestamp,
        event -> Text,
        user_id -> Nullable<Text>,
        body -> Text,
        attempts -> Integer,
        next_attempt_at -> Timestamp,
        delivered_at -> Nullable<Timestamp>,
        last_error -> Nullable<Text>,
        dedupe_key -> Nullable<Text>,
    }
}

diesel::table! {
    rate_counters (subject, window_start) {
        subject -> Text,
        window_start -> BigInt,
        requests -> BigInt,
        tokens -> BigInt,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Text,
        user_id -> Nullable<Text>,
        role -> Text,
        secret_hash -> Binary,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
        label -> Text,
        expires_at -> Nullable<Timestamp>,
        scope -> Text,
    }
}

diesel::table! {
    provider_keys (id) {
        id -> Text,
        user_id -> Text,
        provider -> Text,
        sealed_key -> Binary,
        master_key_id -> BigInt,
        masked_key -> Text,
        settings -> Text,
        last_test_status -> Nullable<Text>,
        last_tested_at -> Nullable<Timestamp>,
        last_test_latency_ms -> Nullable<BigInt>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        label -> Text,
        position -> Integer,
        weight -> Integer,
        enabled -> Bool,
        binding_version -> Integer,
    }
}

diesel::table! {
    deleted_provider_keys (id) {
        id -> Text,
        deleted_at -> Timestamp,
    }
}

diesel::table! {
    audit_events (id) {
        id -> BigInt,
        occurred_at -> Timestamp,
        actor -> Text,
        action -> Text,
        user_id -> Nullable<Text>,
        provider -> Nullable<Text>,
        outcome -> Text,
        request_id -> Nullable<Text>,
        detail -> Nullable<Text>,
        chain_hash -> Nullable<Text>,
    }
}

diesel::table! {
    usage_records (id) {
        id -> BigInt,
        user_id -> Text,
        provider -> Text,
        model -> Text,
        task -> Text,
        input_tokens -> BigInt,
        cached_input_tokens -> BigInt,
        output_tokens -> BigInt,
        reasoning_tokens -> BigInt,
        cost_micro_usd -> Nullable<BigInt>,
        cost_picodollars -> Nullable<BigInt>,
        attempts -> Integer,
        latency_ms -> BigInt,
        outcome -> Text,
        request_id -> Nullable<Text>,
        created_at -> Timestamp,
        cost_source -> Text,
        cache_write_tokens -> BigInt,
        cache_write_1h_tokens -> BigInt,
        door -> Text,
        record_key -> Nullable<Text>,
        token_id -> Nullable<Text>,
        reservation_id -> Nullable<Text>,
    }
}

diesel::table! {
    budgets (id) {
        id -> Text,
        user_id -> Text,
        period -> Text,
        provider -> Text,
        token_id -> Text,
        limit_picodollars -> BigInt,
        hard -> Bool,
        time_zone -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    budget_spend (budget_id, period_start) {
        budget_id -> Text,
        period_start -> Timestamp,
        spent_picodollars -> BigInt,
        reserved_picodollars -> BigInt,
    }
}

diesel::table! {
    budget_reservations (id, budget_id) {
        id -> Text,
        budget_id -> Text,
        period_start -> Timestamp,
        amount_picodollars -> BigInt,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    master_key_checks (key_id) {
        key_id -> BigInt,
        check_value -> Text,
        created_at -> Timestamp,
    }
}

diesel::joinable!(api_tokens -> users (user_id));
diesel::joinable!(provider_keys -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(
    master_key_checks,
    deleted_provider_keys,
    budgets,
    budget_spend,
    budget_reservations,
    rate_counters,
    alert_outbox,
    users,
    api_tokens,
    provider_keys,
    audit_events,
    usage_records
);
