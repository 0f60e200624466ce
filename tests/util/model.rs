//! The model of what a test wrote — every line and its offset, per file — and the assertions
//! that compare the tables with it.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{same_json, EventRow, FileRow, TestDb, HOST, SOURCE};

/// Every line the test wrote and expects stored, per file: (offset of its first byte, text).
#[derive(Debug, Default, Clone)]
pub struct Written {
    pub files: BTreeMap<PathBuf, Vec<(i64, String)>>,
    /// The source of each file whose source is not [`SOURCE`].
    pub sources: BTreeMap<PathBuf, String>,
}

impl Written {
    pub fn new() -> Self {
        Written::default()
    }

    /// Appends `lines` (each followed by `\n`) to `path`, creating it if needed, and records
    /// them as expected rows.
    pub fn append(&mut self, path: &Path, lines: &[String]) {
        let offsets = append_lines(path, lines);
        let entry = self.files.entry(path.to_path_buf()).or_default();
        for (off, line) in offsets.into_iter().zip(lines) {
            entry.push((off, line.clone()));
        }
    }

    /// Records a line the test wrote itself (e.g. in pieces) at `offset`.
    pub fn record(&mut self, path: &Path, offset: i64, line: &str) {
        self.files
            .entry(path.to_path_buf())
            .or_default()
            .push((offset, line.to_string()));
    }

    /// Expects `path`'s rows under source `name` (instead of [`SOURCE`]).
    pub fn set_source(&mut self, path: &Path, name: &str) {
        self.sources.insert(path.to_path_buf(), name.to_string());
    }

    fn source_of(&self, path: &Path) -> &str {
        self.sources.get(path).map(String::as_str).unwrap_or(SOURCE)
    }

    /// Expected rows in all files.
    pub fn total(&self) -> i64 {
        self.files.values().map(|v| v.len() as i64).sum()
    }

    /// Asserts that the tables hold every expected line exactly once, as a record, at its
    /// offset, with its text, host and source, and nothing else.
    pub fn assert_stored(&self, db: &TestDb) {
        db.assert_no_duplicates();
        let dead = db.dead_letters();
        assert!(
            dead.is_empty(),
            "unexpected dead letters: {:?}",
            &dead[..dead.len().min(5)]
        );
        let events = db.events();
        let mut by_path: BTreeMap<PathBuf, Vec<&EventRow>> = BTreeMap::new();
        for e in &events {
            let path = e.path.as_ref().unwrap_or_else(|| {
                panic!("record without a files row (file_id {}): {e:?}", e.file_id)
            });
            assert_eq!(e.host, HOST, "host of {e:?}");
            by_path.entry(PathBuf::from(path)).or_default().push(e);
        }
        let stored_paths: Vec<&PathBuf> = by_path.keys().collect();
        let expected_paths: Vec<&PathBuf> = self.files.keys().collect();
        assert_eq!(stored_paths, expected_paths, "files with rows");
        for (path, expected) in &self.files {
            let rows = &by_path[path];
            let ids: std::collections::BTreeSet<i64> = rows.iter().map(|r| r.file_id).collect();
            assert_eq!(
                ids.len(),
                1,
                "{}: rows under several file ids {ids:?}",
                path.display()
            );
            for r in rows {
                assert_eq!(r.source, self.source_of(path), "source of {r:?}");
            }
            let got: Vec<i64> = rows.iter().map(|r| r.file_offset).collect();
            let want: Vec<i64> = expected.iter().map(|(o, _)| *o).collect();
            assert_eq!(
                got.len(),
                want.len(),
                "{}: {} rows stored, {} lines written",
                path.display(),
                got.len(),
                want.len()
            );
            assert_eq!(got, want, "{}: offsets of the rows", path.display());
            for (row, (off, line)) in rows.iter().zip(expected) {
                assert!(
                    same_json(db.backend, &row.fields, line),
                    "{} at {off}: stored {:?}, written {:?}",
                    path.display(),
                    row.fields,
                    line
                );
            }
        }
        assert_eq!(db.events_count(), self.total(), "record count");
    }

    /// Asserts that each written file has one `files` row, for this host and its source, whose
    /// committed position is the file's length (every line in it is complete and stored).
    pub fn assert_positions_at_end(&self, db: &TestDb) {
        let files = db.files();
        for path in self.files.keys() {
            let rows: Vec<&FileRow> = files
                .iter()
                .filter(|f| Path::new(&f.path) == path.as_path())
                .collect();
            assert_eq!(rows.len(), 1, "{}: files rows {rows:?}", path.display());
            let len = std::fs::metadata(path).unwrap().len() as i64;
            assert_eq!(
                rows[0].committed_offset,
                len,
                "{}: committed_offset",
                path.display()
            );
            assert_eq!(rows[0].host, HOST, "{}: host", path.display());
            assert_eq!(
                rows[0].source,
                self.source_of(path),
                "{}: source",
                path.display()
            );
        }
    }

    /// Cheaper check for large runs: every expected (path, offset) is stored exactly once as a
    /// record and nothing else is stored.
    pub fn assert_offsets_stored(&self, db: &TestDb) {
        db.assert_no_duplicates();
        assert_eq!(db.dead_count(), 0, "dead letters");
        let rows = db.event_offsets();
        let mut by_path: BTreeMap<PathBuf, Vec<i64>> = BTreeMap::new();
        for r in &rows {
            let path = r.path.as_ref().unwrap_or_else(|| {
                panic!("record without a files row (file_id {}): {r:?}", r.file_id)
            });
            by_path
                .entry(PathBuf::from(path))
                .or_default()
                .push(r.file_offset);
        }
        let expected: BTreeMap<PathBuf, Vec<i64>> = self
            .files
            .iter()
            .map(|(p, v)| (p.clone(), v.iter().map(|(o, _)| *o).collect()))
            .collect();
        for (path, want) in &expected {
            let got = by_path.get(path).map(Vec::as_slice).unwrap_or(&[]);
            if got != want.as_slice() {
                let missing = want
                    .iter()
                    .filter(|o| got.binary_search(o).is_err())
                    .count();
                let extra = got
                    .iter()
                    .filter(|o| want.binary_search(o).is_err())
                    .count();
                panic!(
                    "{}: {} rows stored, {} lines written ({missing} missing, {extra} unexpected)",
                    path.display(),
                    got.len(),
                    want.len()
                );
            }
        }
        assert_eq!(
            by_path.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "files with rows"
        );
        assert_eq!(rows.len() as i64, self.total(), "record count");
    }
}

/// Appends `lines`, each followed by `\n`, to `path` in one write; returns each line's offset.
pub fn append_lines(path: &Path, lines: &[String]) -> Vec<i64> {
    let mut buf = Vec::new();
    let mut offsets = Vec::with_capacity(lines.len());
    let start = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0) as i64;
    for line in lines {
        offsets.push(start + buf.len() as i64);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
    }
    append_bytes(path, &buf);
    offsets
}

/// Appends raw bytes to `path`, creating it if needed.
pub fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all(bytes)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// `n` JSON lines for file `tag`, numbered from `first`, of varying length.
pub fn json_lines(tag: &str, first: usize, n: usize) -> Vec<String> {
    (first..first + n)
        .map(|k| {
            format!(
                r#"{{"seq":{k},"file":"{tag}","level":"INFO","msg":"{tag} line {k}","pad":"{}"}}"#,
                "x".repeat(k % 23)
            )
        })
        .collect()
}
