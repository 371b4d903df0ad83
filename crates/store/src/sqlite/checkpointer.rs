//! Copies the write-ahead log into the database file on a thread of its
//! own, so the writer seldom stops for it.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its
//! threshold: with 8,000 pages that commit copies up to 32 MiB into the
//! database file and fsyncs it, tens of milliseconds in which no publish,
//! claim or outcome is written. Here the commit that crosses the threshold
//! wakes a second connection, whose `PASSIVE` checkpoint copies the log
//! beside the writer's commits. The log can only start over once a
//! checkpoint has copied all of it, which a checkpoint running beside
//! commits never quite does: so the first commit after that pass finishes
//! the job on the writer's connection, copying only the few pages the
//! commits added meanwhile, and the next transaction starts the log over.
//!
//! Should the log still grow (a reader holding an old snapshot, a disk
//! slower than the writes), the writer checkpoints itself at four times
//! the threshold, as SQLite would. A checkpoint in the commit's hook never
//! fails the commit: the commit has happened, and the next one tries again.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{self, TrySendError};
use std::thread::JoinHandle;

use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, OpenFlags};

use crate::{Result, StoreError};

/// When the log is long enough to copy.
#[derive(Clone, Copy, Debug)]
struct Thresholds {
    /// Pages at which the checkpointer is woken.
    checkpointer: i32,
    /// Pages at which the writer checkpoints itself: the background
    /// checkpoints have fallen behind.
    writer: i32,
}

/// The hot pages (the due queue, the newest deliveries) are rewritten by
/// nearly every commit, and a checkpoint copies each page once however
/// many commits rewrote it: at 8,000 pages (32 MiB of log) instead of
/// SQLite's 1,000, batched delivery went from 7,800 to 14,000 events/s.
const THRESHOLDS: Thresholds = Thresholds {
    checkpointer: 8_000,
    writer: 32_000,
};

/// Where the background pass stands (shared by the writer's hook and the
/// checkpoint thread).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Pass {
    Idle = 0,
    Running = 1,
    /// Finished: the writer copies what the commits added meanwhile.
    Done = 2,
}

impl Pass {
    fn load(state: &AtomicU8) -> Pass {
        match state.load(Ordering::SeqCst) {
            1 => Pass::Running,
            2 => Pass::Done,
            _ => Pass::Idle,
        }
    }
}

/// What a commit that left the log `pages` long calls for.
#[derive(Debug, PartialEq, Eq)]
enum AfterCommit {
    Nothing,
    /// Wake the checkpointer.
    Signal,
    /// Checkpoint on the writer's connection, now.
    CheckpointHere,
}

impl Thresholds {
    fn after_commit(self, pages: i32, pass: Pass) -> AfterCommit {
        if pages >= self.writer {
            AfterCommit::CheckpointHere
        } else if pages < self.checkpointer {
            AfterCommit::Nothing
        } else {
            match pass {
                Pass::Idle => AfterCommit::Signal,
                Pass::Running => AfterCommit::Nothing,
                Pass::Done => AfterCommit::CheckpointHere,
            }
        }
    }
}

/// The checkpointing thread; dropping this stops it (a checkpoint under
/// way finishes first).
pub(super) struct Checkpointer {
    wake: mpsc::SyncSender<()>,
    /// Raised to stop: the writer's hook holds a sender too, so the
    /// channel stays open while the writer's connection does.
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread on its own connection to `database` and hooks
    /// `writer`'s commits to it, in place of SQLite's automatic checkpoint.
    pub(super) fn attach(writer: &mut Connection, database: &Path) -> Result<Checkpointer> {
        Checkpointer::attach_at(writer, database, THRESHOLDS)
    }

    fn attach_at(
        writer: &mut Connection,
        database: &Path,
        thresholds: Thresholds,
    ) -> Result<Checkpointer> {
        let conn = Connection::open_with_flags(
            database,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|err| {
            StoreError::Unavailable(format!("cannot open {}: {err}", database.display()))
        })?;
        conn.execute_batch("PRAGMA busy_timeout = 5000;")?;
        // A connection checkpoints only once it has seen the log.
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "{} is in journal mode {mode}, not WAL",
                database.display()
            )));
        }
        // One pending wake-up is enough: a pass copies what the log holds.
        let (wake, woken) = mpsc::sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let pass = Arc::new(AtomicU8::new(Pass::Idle as u8));
        let thread_pass = pass.clone();
        let thread = std::thread::Builder::new()
            .name("redrive-sqlite-checkpoint".into())
            .spawn(move || run(conn, woken, &stopped, &thread_pass))
            .map_err(|err| {
                StoreError::Backend(format!("cannot start the checkpoint thread: {err}"))
            })?;
        let signal = wake.clone();
        let hook_pass = pass.clone();
        writer.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages| {
            match thresholds.after_commit(pages, Pass::load(&hook_pass)) {
                AfterCommit::Nothing => {
                    if pages < thresholds.checkpointer {
                        // The log started over: the next pass starts afresh.
                        hook_pass.store(Pass::Idle as u8, Ordering::SeqCst);
                    }
                }
                AfterCommit::Signal => {
                    hook_pass.store(Pass::Running as u8, Ordering::SeqCst);
                    if let Err(TrySendError::Disconnected(())) = signal.try_send(()) {
                        hook_pass.store(Pass::Done as u8, Ordering::SeqCst);
                    }
                }
                AfterCommit::CheckpointHere => {
                    if let Err(err) = wal.checkpoint() {
                        // Busy (the background pass, a backup's checkpoint)
                        // or a full disk: the next commit tries again.
                        tracing::debug!(pages, error = %err, "the writer's checkpoint did not run");
                    }
                    hook_pass.store(Pass::Idle as u8, Ordering::SeqCst);
                }
            }
            Ok(())
        }))?;
        Ok(Checkpointer {
            wake,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Full: a wake-up is pending, which the thread sees the flag after.
        let _ = self.wake.try_send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: Connection, woken: mpsc::Receiver<()>, stop: &AtomicBool, pass: &AtomicU8) {
    while woken.recv().is_ok() && !stop.load(Ordering::SeqCst) {
        match conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
            Ok((log, copied)) => tracing::trace!(log, copied, "checkpoint"),
            // Busy (a backup's checkpoint) or a full disk: the writer's own
            // checkpoint comes next, and the next pass after it.
            Err(err) => tracing::debug!(error = %err, "checkpoint did not run"),
        }
        pass.store(Pass::Done as u8, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_long_log_wakes_the_checkpointer_whose_pass_the_writer_finishes() {
        let t = THRESHOLDS;
        for pass in [Pass::Idle, Pass::Running, Pass::Done] {
            assert_eq!(t.after_commit(0, pass), AfterCommit::Nothing);
            assert_eq!(
                t.after_commit(t.checkpointer - 1, pass),
                AfterCommit::Nothing
            );
            assert_eq!(t.after_commit(t.writer, pass), AfterCommit::CheckpointHere);
        }
        assert_eq!(
            t.after_commit(t.checkpointer, Pass::Idle),
            AfterCommit::Signal
        );
        assert_eq!(
            t.after_commit(t.writer - 1, Pass::Running),
            AfterCommit::Nothing
        );
        assert_eq!(
            t.after_commit(t.checkpointer, Pass::Done),
            AfterCommit::CheckpointHere
        );
    }

    /// A fresh database in WAL mode with one table, and its writer.
    fn wal_database() -> (tempfile::TempDir, std::path::PathBuf, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("test.db");
        let writer = Connection::open(&database).unwrap();
        writer
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (v BLOB);")
            .unwrap();
        (dir, database, writer)
    }

    /// Writes about 400 pages through a writer hooked with `thresholds`
    /// and waits until the database file (not the log) holds them: only a
    /// checkpoint puts them there.
    fn checkpointed_with(thresholds: Thresholds, wait: Duration) -> bool {
        let (_dir, database, mut writer) = wal_database();
        let before = std::fs::metadata(&database).unwrap().len();
        let _checkpointer = Checkpointer::attach_at(&mut writer, &database, thresholds).unwrap();
        for _ in 0..100 {
            writer
                .execute("INSERT INTO t VALUES (zeroblob(16000))", [])
                .unwrap();
        }
        let started = Instant::now();
        while started.elapsed() < wait {
            if std::fs::metadata(&database).unwrap().len() > before + 1_000_000 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn the_checkpointer_copies_the_log_into_the_database() {
        assert!(checkpointed_with(
            Thresholds {
                checkpointer: 50,
                writer: i32::MAX,
            },
            Duration::from_secs(10)
        ));
    }

    #[test]
    fn the_writer_copies_it_itself_when_the_log_grows_too_long() {
        assert!(checkpointed_with(
            Thresholds {
                checkpointer: i32::MAX,
                writer: 50,
            },
            Duration::from_secs(10)
        ));
    }

    #[test]
    fn under_steady_writes_the_log_starts_over_after_each_pass() {
        let (dir, database, mut writer) = wal_database();
        // Only the background pass and the writer finishing it can start
        // the log over: the writer's own threshold is out of reach.
        let _checkpointer = Checkpointer::attach_at(
            &mut writer,
            &database,
            Thresholds {
                checkpointer: 50,
                writer: i32::MAX,
            },
        )
        .unwrap();
        for _ in 0..3_000 {
            // Every commit succeeds, whatever the checkpoints are doing.
            writer
                .execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                .unwrap();
        }
        let log = std::fs::metadata(dir.path().join("test.db-wal"))
            .unwrap()
            .len();
        // Without a fresh start the log would hold all 3,000 pages (12 MB).
        assert!(log < 1_000 * 4_120, "the log grew to {log} bytes");
    }

    #[test]
    fn nothing_copies_a_short_log() {
        assert!(!checkpointed_with(
            Thresholds {
                checkpointer: i32::MAX,
                writer: i32::MAX,
            },
            Duration::from_millis(500)
        ));
    }
}
