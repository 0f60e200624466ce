//! Real-world files in `tests/data/corpus` (their sources in its `PROVENANCE.md`): every
//! non-empty line of every file becomes exactly one row, a record or a dead letter.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::util::{Backend, TestEnv};

/// The corpus folder.
fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/corpus")
}

/// The corpus files, sorted.
fn corpus_files() -> Vec<PathBuf> {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.jsonl in {}", dir.display());
    files
}

/// Lines that must become rows: split on `\n`, the unterminated tail left out, a UTF-8 BOM
/// skipped at the start, and lines that are empty or a lone `\r` not counted.
pub fn non_empty_lines(bytes: &[u8]) -> usize {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut parts: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    parts.pop(); // after the last `\n`: empty, or a line without its newline yet
    parts
        .iter()
        .filter(|l| !l.is_empty() && **l != b"\r")
        .count()
}

#[test]
fn non_empty_lines_counts_as_specified() {
    assert_eq!(non_empty_lines(b""), 0);
    assert_eq!(non_empty_lines(b"{}"), 0);
    assert_eq!(non_empty_lines(b"{}\n"), 1);
    assert_eq!(non_empty_lines(b"\xEF\xBB\xBF\n{}\r\n\r\n\n x\npartial"), 2);
}

both_backends!(corpus_every_non_empty_line_is_one_row);
fn corpus_every_non_empty_line_is_one_row(b: Backend) {
    let Some(env) = TestEnv::new(b) else { return };
    env.config().write(&env);
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for src in corpus_files() {
        let name = src.file_name().unwrap();
        let dst = env.path("logs").join(name);
        std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        let bytes = std::fs::read(&dst).unwrap();
        expected.insert(dst.to_string_lossy().into_owned(), non_empty_lines(&bytes));
    }

    env.run_once();

    let db = &env.db;
    db.assert_no_duplicates();
    let mut got: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for e in db.event_offsets() {
        let path = e.path.expect("a record without a files row");
        got.entry(path).or_default().0 += 1;
    }
    for d in db.dead_letters() {
        let path = d.path.clone().expect("a dead letter without a files row");
        got.entry(path).or_default().1 += 1;
    }
    let mut problems = Vec::new();
    for (path, want) in &expected {
        let (records, dead) = got.remove(path).unwrap_or_default();
        let name = Path::new(path).file_name().unwrap().to_string_lossy();
        eprintln!("{name}: {records} records + {dead} dead letters (expected {want} rows)");
        if records + dead != *want {
            problems.push(format!(
                "{name}: {records} records + {dead} dead letters != {want} non-empty lines"
            ));
        }
    }
    assert!(got.is_empty(), "rows for files not in the corpus: {got:?}");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for f in db.files() {
        let len = std::fs::metadata(&f.path).unwrap().len() as i64;
        assert_eq!(f.committed_offset, len, "{}: committed_offset", f.path);
    }
}
