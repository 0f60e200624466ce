//! The bloom filter of one search block: which grams the text of its rows holds.
//!
//! **The text** of a row is its message and its line (for JSON, the object as written), each
//! *projected*: JSON string escapes decoded (`\u00e9` → `é`, `\/` → `/`), ASCII letters folded
//! to lower case, and every byte that is not an ASCII letter or digit dropped. Projection
//! keeps substrings: if a needle occurs in a text, the needle's projection occurs in the
//! text's projection. It also makes the index blind to what PostgreSQL changes when it stores
//! an object as `jsonb` (spaces, escapes), so the same filter serves both backends.
//!
//! **The grams** are the 4-byte windows of a projection. Four, not three: a block of a thousand
//! lines with hexadecimal identifiers holds nearly all 4,096 hexadecimal trigrams, but a fifth
//! of the 65,536 4-grams, so an identifier of 16 digits is told apart from its neighbours.
//! A needle with fewer than 4 letters and digits is found by scanning.
//!
//! **The filter** sets one bit per gram: its 64-bit hash modulo the filter's size (a power of
//! two). It is built at [`BUILD_BITS`] and then *folded* (its two halves OR-ed together, which
//! keeps "modulo a power of two") while it stays sparse enough ([`MAX_FILL`]): a block of ten
//! lines stores a few hundred bytes, one of [`super::BLOCK_ROWS`] lines a few kilobytes.

/// Bits of a filter while it is built (128 KiB).
pub const BUILD_BITS: usize = 1 << 20;
/// The smallest stored filter, in bits.
pub const MIN_BITS: usize = 1 << 10;
/// Folding stops before the share of set bits would pass this: a gram absent from the block
/// then passes the test with about this probability, and a needle of `n` grams with about its
/// `n`th power.
pub const MAX_FILL: f64 = 0.35;

/// The shortest projected needle the index can serve: shorter ones are found by scanning.
pub const MIN_GRAM: usize = 4;

/// A bloom filter of `words.len() * 64` bits (a power of two).
#[derive(Clone, PartialEq, Eq)]
pub struct Bloom {
    words: Vec<u64>,
}

impl std::fmt::Debug for Bloom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bloom({} bits, {:.3} set)", self.bits(), self.fill())
    }
}

impl Default for Bloom {
    fn default() -> Self {
        Bloom::new()
    }
}

impl Bloom {
    /// An empty filter of [`BUILD_BITS`].
    pub fn new() -> Bloom {
        Bloom::with_bits(BUILD_BITS)
    }

    /// An empty filter of `bits` bits (a power of two, at least 64).
    pub fn with_bits(bits: usize) -> Bloom {
        Bloom {
            words: vec![0; bits.next_power_of_two().max(64) / 64],
        }
    }

    /// The filter's size in bits.
    pub fn bits(&self) -> usize {
        self.words.len() * 64
    }

    /// The share of bits set.
    pub fn fill(&self) -> f64 {
        let set: u32 = self.words.iter().map(|w| w.count_ones()).sum();
        f64::from(set) / self.bits() as f64
    }

    /// Adds one gram (its hash, from [`text_grams`] or [`line_grams`]).
    pub fn insert(&mut self, hash: u64) {
        let p = hash & (self.bits() as u64 - 1);
        self.words[(p / 64) as usize] |= 1 << (p % 64);
    }

    /// Adds the grams of `text` as it is (a message: already decoded).
    pub fn add_text(&mut self, text: &[u8], scratch: &mut Vec<u8>) {
        text_grams(text, scratch, |h| self.insert(h));
    }

    /// Adds the grams of a stored line (see [`line_grams`]).
    pub fn add_line(&mut self, line: &[u8], scratch: &mut Vec<u8>) {
        line_grams(line, scratch, |h| self.insert(h));
    }

    /// Adds every gram of `other` (of the same size, or larger: it is folded to this size).
    pub fn union(&mut self, other: &Bloom) {
        let n = self.words.len();
        for (i, w) in other.words.iter().enumerate() {
            self.words[i % n] |= w;
        }
    }

    /// Halves the filter while the result stays under [`MAX_FILL`] and [`MIN_BITS`].
    pub fn fold(self) -> Bloom {
        let mut one = Bloom::fold_all(vec![self]);
        one.pop().unwrap_or_default()
    }

    /// Folds filters together, to one size: halves them all while each stays under
    /// [`MAX_FILL`] and [`MIN_BITS`] (all of the same size to begin with).
    pub fn fold_all(mut blooms: Vec<Bloom>) -> Vec<Bloom> {
        while blooms.first().is_some_and(|b| b.bits() > MIN_BITS)
            && blooms.iter().all(|b| b.halved_fill() <= MAX_FILL)
        {
            for b in &mut blooms {
                b.halve();
            }
        }
        blooms
    }

    /// The share of bits set once halved (without halving).
    fn halved_fill(&self) -> f64 {
        let (low, high) = self.words.split_at(self.words.len() / 2);
        let set: u32 = low
            .iter()
            .zip(high)
            .map(|(a, b)| (a | b).count_ones())
            .sum();
        f64::from(set) / (low.len() * 64) as f64
    }

    /// ORs the upper half into the lower and drops it.
    fn halve(&mut self) {
        let half = self.words.len() / 2;
        let (low, high) = self.words.split_at_mut(half);
        for (a, b) in low.iter_mut().zip(high.iter()) {
            *a |= b;
        }
        self.words.truncate(half);
    }

    /// The filter folded to at most `bits` bits (and no fewer than [`MIN_BITS`]), however
    /// full that makes it.
    pub fn folded_to(&self, bits: usize) -> Bloom {
        let mut folded = self.clone();
        while folded.bits() > bits.max(MIN_BITS) {
            folded.halve();
        }
        folded
    }

    /// The filter as stored: little-endian words (bit `p` is bit `p % 8` of byte `p / 8`).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    /// Whether bit `p` is set, in stored bytes.
    pub fn bit_in(bytes: &[u8], p: u64) -> bool {
        bytes
            .get((p / 8) as usize)
            .is_some_and(|b| b & (1 << (p % 8)) != 0)
    }
}

/// The grams a needle's rows must hold, as hashes; `None` when the needle is too short (after
/// projection) for the index.
pub fn needle_hashes(needle: &str) -> Option<Vec<u64>> {
    let mut p = Vec::new();
    project(needle.as_bytes(), false, &mut p);
    if p.len() < MIN_GRAM {
        return None;
    }
    let mut hashes = Vec::new();
    for_each_gram(&p, |h| {
        if !hashes.contains(&h) {
            hashes.push(h);
        }
    });
    Some(hashes)
}

/// The bit of a gram's hash in a filter of `bits` bits (a power of two).
pub fn position(hash: u64, bits: u64) -> u64 {
    hash & (bits - 1)
}

/// Whether a filter (stored bytes of `bits` bits) may hold every gram.
pub fn may_hold(bytes: &[u8], bits: u64, hashes: &[u64]) -> bool {
    hashes
        .iter()
        .all(|&h| Bloom::bit_in(bytes, position(h, bits)))
}

/// The grams of `text` as it is (a message: already decoded), as hashes.
pub fn text_grams(text: &[u8], scratch: &mut Vec<u8>, f: impl FnMut(u64)) {
    project(text, false, scratch);
    for_each_gram(scratch, f);
}

/// The grams of a stored line (a JSON object as written), as hashes: of the text as it is (what
/// SQLite searches) and, if it holds an escape, of its decoded text too (what PostgreSQL's
/// `jsonb` gives back).
pub fn line_grams(line: &[u8], scratch: &mut Vec<u8>, mut f: impl FnMut(u64)) {
    text_grams(line, scratch, &mut f);
    if memchr::memchr(b'\\', line).is_some() {
        project(line, true, scratch);
        for_each_gram(scratch, f);
    }
}

fn for_each_gram(p: &[u8], mut f: impl FnMut(u64)) {
    let mut window = 0u32;
    for (i, &b) in p.iter().enumerate() {
        window = (window << 8) | u32::from(b);
        if i + 1 >= MIN_GRAM {
            f(mix(u64::from(window)));
        }
    }
}

/// SplitMix64's finaliser: every input bit moves every output bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `text`'s projection into `out`: ASCII letters lower-cased, everything but ASCII letters and
/// digits dropped; with `decode`, JSON escapes decoded first (a `\uXXXX` escape is dropped
/// unless it spells an ASCII letter or digit: `\u0041` → `a`).
pub fn project(text: &[u8], decode: bool, out: &mut Vec<u8>) {
    out.clear();
    if !decode {
        out.extend(
            text.iter()
                .filter(|b| b.is_ascii_alphanumeric())
                .map(u8::to_ascii_lowercase),
        );
        return;
    }
    let mut i = 0;
    while i < text.len() {
        let b = text[i];
        if b == b'\\' {
            match text.get(i + 1) {
                Some(b'u') => {
                    let code = text
                        .get(i + 2..i + 6)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u32::from_str_radix(h, 16).ok());
                    if let Some(c) = code {
                        if let Ok(c) = u8::try_from(c) {
                            push(out, c);
                        }
                        i += 6;
                        continue;
                    }
                }
                // `\n`, `\t`… decode to characters that are dropped; `\/`, `\\`, `\"` too.
                Some(_) => {
                    i += 2;
                    continue;
                }
                None => {}
            }
        }
        push(out, b);
        i += 1;
    }
}

fn push(out: &mut Vec<u8>, b: u8) {
    if b.is_ascii_alphanumeric() {
        out.push(b.to_ascii_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bloom_of(texts: &[&str]) -> Bloom {
        let mut b = Bloom::new();
        let mut scratch = Vec::new();
        for t in texts {
            b.add_line(t.as_bytes(), &mut scratch);
        }
        b.fold()
    }

    fn holds(b: &Bloom, needle: &str) -> bool {
        let h = needle_hashes(needle).expect("long enough");
        may_hold(&b.to_bytes(), b.bits() as u64, &h)
    }

    #[test]
    fn projection_decodes_escapes_folds_case_and_drops_punctuation() {
        let mut out = Vec::new();
        let line = br#"{"Msg":"Caf\u00e9 \u0041BC\/x\n-42"}"#;
        project(line, true, &mut out);
        assert_eq!(out, b"msgcafabcx42");
        project(line, false, &mut out);
        assert_eq!(out, b"msgcafu00e9u0041bcxn42");
    }

    #[test]
    fn every_substring_of_a_text_is_held_by_its_filter() {
        let text = r#"{"level":"ERROR","msg":"upstream Timed-Out after 30s","trace":"4bf92f3577b34da6a3ce929d0e0e4736"}"#;
        let b = bloom_of(&[text]);
        for start in 0..text.len() {
            for end in start + 1..=text.len() {
                let needle = &text[start..end];
                if needle_hashes(needle).is_some() {
                    assert!(holds(&b, needle), "{needle:?}");
                    assert!(holds(&b, &needle.to_uppercase()), "{needle:?} upper");
                }
            }
        }
    }

    #[test]
    fn a_line_with_escapes_holds_its_raw_and_its_decoded_text() {
        let b = bloom_of(&[r#"{"msg":"caf\u00e9s \u0041pple"}"#]);
        for needle in ["u00e9s", "cafés", "apple", "u0041pple", "\\u0041pple"] {
            assert!(holds(&b, needle), "{needle}");
        }
    }

    #[test]
    fn a_filter_of_many_rows_rejects_what_they_do_not_hold() {
        let rows: Vec<String> = (0..super::super::BLOCK_ROWS as u64)
            .map(|i| {
                format!(
                    r#"{{"msg":"request {i} served","trace":"{:016x}{:016x}"}}"#,
                    mix(i),
                    mix(i + 7)
                )
            })
            .collect();
        let refs: Vec<&str> = rows.iter().map(String::as_str).collect();
        let b = bloom_of(&refs);
        assert!(b.bits() <= BUILD_BITS, "folded: {b:?}");
        assert!(b.fill() <= MAX_FILL, "{b:?}");
        assert!(holds(&b, &format!("{:016x}", mix(500))));
        // Hexadecimal identifiers that are not there: most of their 4-grams are not either.
        let absent = (0..200u64)
            .filter(|i| !holds(&b, &format!("{:016x}", mix(1_000_000 + i))))
            .count();
        assert!(absent >= 195, "only {absent} of 200 absent ids rejected");
        assert!(!holds(&b, "xylophone"));
    }

    #[test]
    fn union_and_fold_keep_every_gram() {
        let a = bloom_of(&["alpha beta"]);
        let mut big = Bloom::new();
        let mut scratch = Vec::new();
        big.add_text(b"gamma delta", &mut scratch);
        let mut both = Bloom::new();
        both.union(&big);
        both.add_text(b"alpha beta", &mut scratch);
        let both = both.fold();
        for n in ["alpha", "beta", "gamma", "delta"] {
            assert!(holds(&both, n), "{n}");
        }
        assert!(holds(&a, "alpha"));
        assert!(!holds(&a, "gamma"));
    }

    #[test]
    fn short_needles_cannot_use_the_index() {
        assert!(needle_hashes("abc").is_none());
        assert!(needle_hashes("a-b-c").is_none());
        assert!(needle_hashes(" : ").is_none());
        assert_eq!(needle_hashes("abcd").map(|h| h.len()), Some(1));
        assert_eq!(needle_hashes("ab-cdef").map(|h| h.len()), Some(3));
    }
}
