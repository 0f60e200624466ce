//! Table definitions, one module per backend. The tables are the same; the column types differ
//! (`bytea`, `timestamptz` and `jsonb` in PostgreSQL; blobs and RFC 3339 text in SQLite), so one
//! macro writes both. Keep it in step with `migrations/sqlite/` and `migrations/postgres/`:
//! after a migration, compare with `diesel print-schema --schema-key sqlite|postgres` (see
//! diesel.toml; for SQLite it infers `Integer` for INTEGER ids, which logbelt declares `BigInt`).

/// The tables, with the backend's types for bytes, instants and JSON objects.
macro_rules! tables {
    (bytes: $bytes:ident, instant: $instant:ident, object: $object:ident) => {
        diesel::table! {
            dead_letters (id) {
                id -> BigInt,
                host -> Text,
                source -> Text,
                file_id -> BigInt,
                file_offset -> BigInt,
                raw -> $bytes,
                line_bytes -> BigInt,
                error -> Text,
                ingested_at -> $instant,
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
                updated_at -> $instant,
            }
        }

        diesel::table! {
            log_events (id) {
                id -> BigInt,
                host -> Text,
                source -> Text,
                file_id -> BigInt,
                file_offset -> BigInt,
                ts -> Nullable<$instant>,
                level -> Nullable<Text>,
                message -> Nullable<Text>,
                fields -> $object,
                ingested_at -> $instant,
            }
        }

        diesel::table! {
            expiry (host) {
                host -> Text,
                ran_at -> $instant,
                expired_at -> Nullable<$instant>,
                expired_before -> Nullable<$instant>,
                log_events -> BigInt,
                dead_letters -> BigInt,
                files -> BigInt,
                partitions -> BigInt,
                stored_bytes -> BigInt,
            }
        }

        diesel::allow_tables_to_appear_in_same_query!(dead_letters, expiry, files, log_events,);
    };
}

pub mod postgres {
    //! PostgreSQL: `migrations/postgres/`.
    tables!(bytes: Bytea, instant: Timestamptz, object: Jsonb);
}

pub mod sqlite {
    //! SQLite: `migrations/sqlite/`. Instants are RFC 3339 text, objects JSON text.
    tables!(bytes: Binary, instant: Text, object: Text);
}
