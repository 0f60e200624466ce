// Kept by hand in step with migrations/postgres/ (diesel.toml's `[print_schema.postgres]` names this
// file). `diesel print-schema --schema-key postgres` is the reference to compare with after a
// migration.

diesel::table! {
    dead_letters (id) {
        id -> BigInt,
        host -> Text,
        source -> Text,
        file_id -> BigInt,
        file_offset -> BigInt,
        raw -> Bytea,
        line_bytes -> BigInt,
        error -> Text,
        ingested_at -> Timestamptz,
    }
}

diesel::table! {
    files (id) {
        id -> BigInt,
        host -> Text,
        source -> Text,
        path -> Text,
        dev -> BigInt,
        inode -> BigInt,
        fingerprint_len -> Integer,
        fingerprint -> BigInt,
        committed_offset -> BigInt,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    log_events (id) {
        id -> BigInt,
        host -> Text,
        source -> Text,
        file_id -> BigInt,
        file_offset -> BigInt,
        ts -> Nullable<Timestamptz>,
        level -> Nullable<Text>,
        message -> Nullable<Text>,
        fields -> Jsonb,
        ingested_at -> Timestamptz,
    }
}

diesel::allow_tables_to_appear_in_same_query!(dead_letters, files, log_events,);
