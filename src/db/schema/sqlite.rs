// Kept by hand in step with migrations/sqlite/ (diesel.toml's `[print_schema.sqlite]` names this
// file). `diesel print-schema --schema-key sqlite` is the reference to compare with after a
// migration; it infers `Integer` for SQLite's INTEGER ids, which logbelt declares `BigInt`.

diesel::table! {
    dead_letters (id) {
        id -> BigInt,
        host -> Text,
        source -> Text,
        file_id -> BigInt,
        file_offset -> BigInt,
        raw -> Binary,
        line_bytes -> BigInt,
        error -> Text,
        ingested_at -> Text,
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
        updated_at -> Text,
    }
}

diesel::table! {
    log_events (id) {
        id -> BigInt,
        host -> Text,
        source -> Text,
        file_id -> BigInt,
        file_offset -> BigInt,
        ts -> Nullable<Text>,
        level -> Nullable<Text>,
        message -> Nullable<Text>,
        fields -> Text,
        ingested_at -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(dead_letters, files, log_events,);
