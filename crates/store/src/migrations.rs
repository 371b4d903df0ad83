//! The schema migrations of both backends, kept as SQL files under
//! `crates/store/migrations/{sqlite,postgres}/NNNN_name.sql` and compiled
//! in. Each file moves its backend's schema one version forward, in the
//! order of its number; never edit a shipped one.

/// One migration: its file name (without `.sql`) and its SQL.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Migration {
    pub name: &'static str,
    pub sql: &'static str,
}

/// `migration!("sqlite", "0001_initial")` compiles in that file.
macro_rules! migration {
    ($backend:literal, $name:literal) => {
        $crate::migrations::Migration {
            name: $name,
            sql: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/",
                $backend,
                "/",
                $name,
                ".sql"
            )),
        }
    };
}
pub(crate) use migration;

/// The version a migration (named by its file) brings the schema to.
#[cfg(any(test, feature = "testing"))]
pub(crate) fn version_of(migrations: &[Migration], name: &str) -> Option<usize> {
    migrations
        .iter()
        .position(|m| m.name == name)
        .map(|index| index + 1)
}

/// Checks that `migrations` lists every file of `crates/store/migrations/
/// {backend}`, numbered 1, 2, … in order: a file can't be forgotten.
#[cfg(test)]
pub(crate) fn assert_lists_every_file(backend: &str, migrations: &[Migration]) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let listed: Vec<String> = migrations
        .iter()
        .map(|m| format!("{}.sql", m.name))
        .collect();
    assert_eq!(files, listed, "the migrations of {backend}");
    for (index, migration) in migrations.iter().enumerate() {
        assert_eq!(
            migration.name[..4].parse::<usize>().ok(),
            Some(index + 1),
            "{} is out of order",
            migration.name
        );
    }
}
