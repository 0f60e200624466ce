//! Table definitions, one module per backend (their column types differ: `jsonb`, `bytea`,
//! `timestamptz` in PostgreSQL). Generated with `diesel print-schema` (see diesel.toml).

pub mod postgres;
pub mod sqlite;
