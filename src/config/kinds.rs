//! What a config value may be, and the "expected …, found …" message when it is something else.
//!
//! serde's own type errors say `invalid type: string "5", expected usize`. A config user needs
//! `expected an integer from 1 to 100000, found "5"`: what the key holds, then the value as they
//! wrote it. So every value is read through a [`Kind`], which says what it expects and builds
//! the value from what the file holds; anything else becomes that one-line message. serde still
//! does the rest (tables, unknown keys, required keys), and the error keeps its place in the
//! file (from `toml`) and its key (from `serde_path_to_error`).

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny};
use serde::de::{MapAccess, SeqAccess, Visitor};

/// How `toml` hands a date-time to serde: as a table with this one key.
pub(super) const DATETIME_KEY: &str = "$__toml_private_datetime";

/// A value as the user wrote it, for "found …": `"5"`, `0`, `a float 5.0`, `true`,
/// `a date-time 1979-05-27`, `[]`, `an array`, `an array of tables`, `a table`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Found {
    Str(String),
    Int(i128),
    Float(f64),
    Bool(bool),
    DateTime(String),
    EmptyArray,
    Array,
    ArrayOfTables,
    Table,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Str(s) => write!(f, "{s:?}"),
            Found::Int(n) => write!(f, "{n}"),
            Found::Float(x) => write!(f, "a float {x:?}"),
            Found::Bool(b) => write!(f, "{b}"),
            Found::DateTime(d) => write!(f, "a date-time {d}"),
            Found::EmptyArray => f.write_str("[]"),
            Found::Array => f.write_str("an array"),
            Found::ArrayOfTables => f.write_str("an array of tables"),
            Found::Table => f.write_str("a table"),
        }
    }
}

impl Found {
    /// Reads an array to its end to say what it is.
    fn of_array<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Found, A::Error> {
        let mut found = Found::EmptyArray;
        while let Some(item) = seq.next_element_seed(Seed::<Anything>(PhantomData))? {
            found = match (found, item) {
                (Found::EmptyArray | Found::ArrayOfTables, Found::Table) => Found::ArrayOfTables,
                _ => Found::Array,
            };
        }
        Ok(found)
    }

    /// Reads a table to its end to say what it is (`toml` hands a date-time over as a table).
    fn of_table<'de, A: MapAccess<'de>>(mut map: A) -> Result<Found, A::Error> {
        match map.next_key::<String>()? {
            Some(key) if key == DATETIME_KEY => Ok(Found::DateTime(map.next_value::<String>()?)),
            Some(_) => {
                map.next_value::<IgnoredAny>()?;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Found::Table)
            }
            None => Ok(Found::Table),
        }
    }
}

/// A kind of value a key holds. Each method is given what the file holds there; by default it
/// is the wrong type.
pub(super) trait Kind {
    /// What the value becomes.
    type Value;

    /// What the key holds, for "expected …": `a glob pattern string`.
    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result;

    /// A string, integer, float, boolean or date-time.
    fn scalar<E: de::Error>(found: Found) -> Result<Self::Value, E> {
        Err(wrong::<Self, E>(found))
    }

    /// An array.
    fn array<'de, A: SeqAccess<'de>>(seq: A) -> Result<Self::Value, A::Error> {
        Err(wrong::<Self, A::Error>(Found::of_array(seq)?))
    }

    /// A table (or a date-time, which `toml` hands over as a table).
    fn table<'de, A: MapAccess<'de>>(map: A) -> Result<Self::Value, A::Error> {
        Err(wrong::<Self, A::Error>(Found::of_table(map)?))
    }
}

/// `expected <what K holds>, found <found>`.
pub(super) fn wrong<K: Kind + ?Sized, E: de::Error>(found: impl fmt::Display) -> E {
    struct Expected<K: ?Sized>(PhantomData<K>);
    impl<K: Kind + ?Sized> fmt::Display for Expected<K> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            K::expected(f)
        }
    }
    E::custom(format_args!(
        "expected {}, found {found}",
        Expected::<K>(PhantomData)
    ))
}

/// Reads a value of kind `K`: `#[serde(deserialize_with = "read::<K, _>")]`.
pub(super) fn read<'de, K: Kind, D: Deserializer<'de>>(d: D) -> Result<K::Value, D::Error> {
    d.deserialize_any(Seed::<K>(PhantomData))
}

/// Reads a table into `T` (a struct deriving `Deserialize`): `#[serde(deserialize_with =
/// "table")]`.
pub(super) fn table<'de, T: DeserializeOwned, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    read::<Table<T>, D>(d)
}

/// A table with every key at its default: `#[serde(default = "defaults")]` on a table whose
/// keys all have defaults, so that an absent table is the same as an empty one.
pub(super) fn defaults<T: DeserializeOwned>() -> T {
    let empty =
        de::value::MapDeserializer::<_, de::value::Error>::new(std::iter::empty::<((), ())>());
    // ok: a table given `defaults` has a default for every key (the README example test
    // loads every table empty), so an empty map always deserialises.
    T::deserialize(empty).expect("every key of this table has a default")
}

/// The visitor (and element seed) that dispatches to a [`Kind`].
struct Seed<K>(PhantomData<K>);

impl<'de, K: Kind> DeserializeSeed<'de> for Seed<K> {
    type Value = K::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<K::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, K: Kind> Visitor<'de> for Seed<K> {
    type Value = K::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        K::expected(f)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<K::Value, E> {
        K::scalar(Found::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<K::Value, E> {
        K::scalar(Found::Int(n.into()))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<K::Value, E> {
        K::scalar(Found::Int(n.into()))
    }

    fn visit_i128<E: de::Error>(self, n: i128) -> Result<K::Value, E> {
        K::scalar(Found::Int(n))
    }

    fn visit_u128<E: de::Error>(self, n: u128) -> Result<K::Value, E> {
        let n = i128::try_from(n).map_err(|_| E::custom("integer number overflowed"))?;
        K::scalar(Found::Int(n))
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<K::Value, E> {
        K::scalar(Found::Float(x))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<K::Value, E> {
        K::scalar(Found::Str(s.to_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<K::Value, A::Error> {
        K::array(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<K::Value, A::Error> {
        K::table(map)
    }
}

/// Any value at all, described: what [`Found::of_array`] reads its elements as.
struct Anything;

impl Kind for Anything {
    type Value = Found;

    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn scalar<E: de::Error>(found: Found) -> Result<Found, E> {
        Ok(found)
    }

    fn array<'de, A: SeqAccess<'de>>(seq: A) -> Result<Found, A::Error> {
        Found::of_array(seq)
    }

    fn table<'de, A: MapAccess<'de>>(map: A) -> Result<Found, A::Error> {
        Found::of_table(map)
    }
}

/// A TOML table read into `T`, a struct deriving `Deserialize`.
pub(super) struct Table<T>(PhantomData<T>);

impl<T: DeserializeOwned> Kind for Table<T> {
    type Value = T;

    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a table")
    }

    fn table<'de, A: MapAccess<'de>>(map: A) -> Result<T, A::Error> {
        T::deserialize(de::value::MapAccessDeserializer::new(map))
    }
}

/// An element kind that can make up a [`List`].
pub(super) trait Item: Kind {
    /// What the list holds: `an array of glob pattern strings`.
    const ARRAY: &'static str;
    /// The message for an empty list, or `None` if an empty list is fine.
    const EMPTY: Option<&'static str>;
}

/// An array of `K`s; each element is read (and located in errors) as a `K`.
pub(super) struct List<K>(PhantomData<K>);

impl<K: Item> Kind for List<K> {
    type Value = Vec<K::Value>;

    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(K::ARRAY)
    }

    fn array<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Vec<K::Value>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(Seed::<K>(PhantomData))? {
            items.push(item);
        }
        match K::EMPTY {
            Some(message) if items.is_empty() => Err(de::Error::custom(message)),
            _ => Ok(items),
        }
    }
}

/// An integer from `MIN` to `MAX`.
pub(super) struct Ranged<const MIN: i64, const MAX: i64>;

impl<const MIN: i64, const MAX: i64> Kind for Ranged<MIN, MAX> {
    type Value = i64;

    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an integer from {MIN} to {MAX}")
    }

    fn scalar<E: de::Error>(found: Found) -> Result<i64, E> {
        match found {
            Found::Int(n) => match i64::try_from(n) {
                Ok(v) if (MIN..=MAX).contains(&v) => Ok(v),
                _ => Err(wrong::<Self, E>(found)),
            },
            found => Err(wrong::<Self, E>(found)),
        }
    }
}

/// An integer key from `MIN` to `MAX`, as the field's integer type:
/// `#[serde(deserialize_with = "ranged::<1, 64, _, _>")]`.
pub(super) fn ranged<'de, const MIN: i64, const MAX: i64, T, D>(d: D) -> Result<T, D::Error>
where
    T: TryFrom<i64>,
    D: Deserializer<'de>,
{
    let n = read::<Ranged<MIN, MAX>, D>(d)?;
    T::try_from(n).map_err(|_| wrong::<Ranged<MIN, MAX>, D::Error>(n))
}

/// A `*_ms` key from `MIN` to `MAX` milliseconds:
/// `#[serde(deserialize_with = "ranged_ms::<1, 3_600_000, _>")]`.
pub(super) fn ranged_ms<'de, const MIN: i64, const MAX: i64, D>(d: D) -> Result<Duration, D::Error>
where
    D: Deserializer<'de>,
{
    ranged::<MIN, MAX, u64, D>(d).map(Duration::from_millis)
}

/// The default of an integer key: `#[serde(default = "default_int::<5_000, _>")]`. The README's
/// example config lists every default, and a test reads it back through the ranges.
pub(super) fn default_int<const N: u64, T: TryFrom<u64>>() -> T {
    // ok: `N` is a literal in the field's attribute, checked by the defaults test; it cannot
    // come from a config file.
    T::try_from(N)
        .ok()
        .expect("a default fits the type of its key")
}

/// The default of a `*_ms` key: `#[serde(default = "default_ms::<200>")]`.
pub(super) fn default_ms<const N: u64>() -> Duration {
    Duration::from_millis(N)
}

/// `true` or `false`.
pub(super) struct Flag;

impl Kind for Flag {
    type Value = bool;

    fn expected(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("true or false")
    }

    fn scalar<E: de::Error>(found: Found) -> Result<bool, E> {
        match found {
            Found::Bool(b) => Ok(b),
            found => Err(wrong::<Self, E>(found)),
        }
    }
}
