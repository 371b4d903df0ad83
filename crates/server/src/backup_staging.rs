//! Where `POST /v1/admin/backup` stages its copy: a hidden `.backup-*.db`
//! file in the data directory, unlinked as soon as it is opened. A crash in
//! between leaves the file behind; the next start removes it.

use std::path::{Path, PathBuf};

const PREFIX: &str = ".backup-";
const SUFFIX: &str = ".db";

/// A fresh staging path in `dir`.
pub fn staged_path(dir: &Path) -> PathBuf {
    dir.join(format!("{PREFIX}{}{SUFFIX}", uuid::Uuid::now_v7().simple()))
}

fn is_staged(name: &str) -> bool {
    name.len() > PREFIX.len() + SUFFIX.len() && name.starts_with(PREFIX) && name.ends_with(SUFFIX)
}

/// Removes the staged backups a crashed process left in `dir`, logging
/// each; returns the ones removed. Only safe while this process holds the
/// data directory, so no backup of its own is under way. A file that
/// cannot be removed is logged and left: it only wastes space.
pub fn remove_leftovers(dir: &Path) -> Vec<PathBuf> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            tracing::warn!(dir = %dir.display(), error = %err,
                "cannot look for leftover staged backups");
            return Vec::new();
        }
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let staged = entry.file_name().to_str().is_some_and(is_staged)
            && entry.file_type().is_ok_and(|kind| kind.is_file());
        if !staged {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(),
                    "removed a staged backup left by an interrupted backup");
                removed.push(path);
            }
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err,
                    "cannot remove a staged backup left by an interrupted backup");
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_staged_backups_are_removed() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let staged = staged_path(dir.path());
        let keep = [
            "redrive.db",
            "backup-1.db",
            ".backup-notes.txt",
            ".backup-.db",
        ];
        for name in keep {
            std::fs::write(dir.path().join(name), b"x").expect("a file");
        }
        std::fs::write(&staged, b"half a database").expect("a staged file");
        std::fs::create_dir(dir.path().join(".backup-dir.db")).expect("a directory");

        assert_eq!(remove_leftovers(dir.path()), vec![staged.clone()]);
        assert!(!staged.exists());
        for name in keep {
            assert!(dir.path().join(name).exists(), "{name} was removed");
        }
        assert!(dir.path().join(".backup-dir.db").is_dir());
        assert!(remove_leftovers(dir.path()).is_empty());
        assert!(remove_leftovers(&dir.path().join("missing")).is_empty());
    }
}
