//! Finding the files that the sources' globs match. Each `include` pattern is compiled once, with
//! its literal prefix (where a walk starts, and the folder the notifications watch) and how deep
//! a walk goes.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use crate::config::SourceConfig;

/// Kernel file systems that a glob walks into only when its literal part names them: `/proc`
/// alone holds every process's root (`/proc/*/root`) and files whose reads block or consume
/// (`/proc/kmsg`).
const PSEUDO_FILE_SYSTEMS: &[&str] = &["/proc", "/sys", "/dev"];

/// One compiled `include` pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    matcher: globset::GlobMatcher,
    /// The longest prefix without glob characters (for a literal path: its folder).
    root: PathBuf,
    /// How many levels below `root` a match can be (`usize::MAX` with `**`); 0 for a literal
    /// path, which is looked at, not walked.
    depth: usize,
}

impl Pattern {
    /// Compiles an absolute pattern (the config has checked it).
    ///
    /// # Errors
    /// When globset refuses it.
    pub fn new(text: &str) -> Result<Self, globset::Error> {
        let matcher = globset::GlobBuilder::new(text)
            .literal_separator(true)
            .build()?
            .compile_matcher();
        let components: Vec<Component<'_>> = Path::new(text).components().collect();
        let is_glob = |c: &Component<'_>| {
            c.as_os_str()
                .to_string_lossy()
                .contains(['*', '?', '[', '{'])
        };
        let (root, depth) = match components.iter().position(is_glob) {
            None => (
                Path::new(text)
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default(),
                0,
            ),
            Some(first) => {
                let depth = if text.contains("**") {
                    usize::MAX
                } else {
                    components.len() - first
                };
                (components[..first].iter().collect(), depth)
            }
        };
        Ok(Pattern {
            text: text.to_owned(),
            matcher,
            root,
            depth,
        })
    }

    /// The folder to watch for changes: the literal prefix.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether matches can lie deeper than directly in [`Pattern::root`].
    pub fn recursive(&self) -> bool {
        self.depth > 1
    }

    /// The paths that match now. A symbolic link that matches is returned (the caller follows
    /// it to its file); the walk goes into links to directories only with `follow_links`,
    /// detecting loops (walkdir), so a `**` over a symlink loop ends.
    fn matching(&self, follow_links: bool) -> Vec<PathBuf> {
        if self.depth == 0 {
            let path = PathBuf::from(&self.text);
            return if path.exists() {
                vec![path]
            } else {
                Vec::new()
            };
        }
        let root = &self.root;
        let walk = walkdir::WalkDir::new(root)
            .follow_links(follow_links)
            .min_depth(1)
            .max_depth(self.depth)
            .into_iter()
            .filter_entry(|e| !(e.file_type().is_dir() && is_pseudo_fs(e.path(), root)));
        let mut paths = Vec::new();
        for entry in walk {
            match entry {
                Ok(e) if self.matcher.is_match(e.path()) => paths.push(e.into_path()),
                Ok(_) => {}
                // A matching path that cannot be followed (a dangling link, a link loop) is
                // still returned: the caller reports it once.
                Err(e) => match e.path() {
                    Some(p) if self.matcher.is_match(p) => paths.push(p.to_path_buf()),
                    _ => tracing::debug!(error = %e, "Skipped while expanding a glob."),
                },
            }
        }
        paths
    }
}

/// The sources with their patterns compiled.
#[derive(Debug, Clone)]
pub struct Globs {
    sources: Vec<(SourceConfig, Vec<Pattern>)>,
}

impl Globs {
    /// Compiles every source's `include` patterns; one that does not compile is reported and
    /// left out (the config check makes that unlikely).
    pub fn new(sources: &[SourceConfig]) -> Self {
        let sources = sources
            .iter()
            .map(|s| {
                let patterns = s
                    .include
                    .iter()
                    .filter_map(|p| match Pattern::new(p) {
                        Ok(p) => Some(p),
                        Err(e) => {
                            tracing::error!(pattern = %p, error = %e, "Invalid glob; ignored.");
                            None
                        }
                    })
                    .collect();
                (s.clone(), patterns)
            })
            .collect();
        Globs { sources }
    }

    /// Every compiled pattern.
    pub fn patterns(&self) -> impl Iterator<Item = &Pattern> {
        self.sources.iter().flat_map(|(_, p)| p.iter())
    }

    /// Every (source index, path, its metadata or why not) that the globs match now, excluded
    /// ones left out; a path matched by two sources goes to the first. Blocking: run it on a
    /// blocking thread (one hop per scan, not one per file).
    pub fn expand(&self) -> Vec<(usize, PathBuf, std::io::Result<std::fs::Metadata>)> {
        let mut seen = HashSet::new();
        let mut found = Vec::new();
        for (idx, (source, patterns)) in self.sources.iter().enumerate() {
            for pattern in patterns {
                for path in pattern.matching(source.follow_symlinks) {
                    if !source.is_excluded(&path) && seen.insert(path.clone()) {
                        let meta = std::fs::metadata(&path);
                        found.push((idx, path, meta));
                    }
                }
            }
        }
        found
    }
}

/// Whether `dir` is one of [`PSEUDO_FILE_SYSTEMS`] and the walk's `root` is not inside it.
fn is_pseudo_fs(dir: &Path, root: &Path) -> bool {
    PSEUDO_FILE_SYSTEMS
        .iter()
        .any(|fs| dir == Path::new(fs) && !root.starts_with(fs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_is_the_literal_prefix() {
        let p = Pattern::new("/var/log/app/*.jsonl").unwrap();
        assert_eq!(
            (p.root(), p.recursive()),
            (Path::new("/var/log/app"), false)
        );
        let p = Pattern::new("/var/log/*/x.jsonl").unwrap();
        assert_eq!((p.root(), p.recursive()), (Path::new("/var/log"), true));
        let p = Pattern::new("/var/log/**/x.jsonl").unwrap();
        assert_eq!((p.root(), p.recursive()), (Path::new("/var/log"), true));
        let p = Pattern::new("/var/log/app.jsonl").unwrap();
        assert_eq!((p.root(), p.recursive()), (Path::new("/var/log"), false));
    }

    #[test]
    fn kernel_file_systems_are_walked_only_when_the_glob_starts_inside_them() {
        assert!(is_pseudo_fs(Path::new("/proc"), Path::new("/")));
        assert!(!is_pseudo_fs(Path::new("/proc"), Path::new("/proc")));
        assert!(!is_pseudo_fs(Path::new("/var/log"), Path::new("/")));
    }
}
