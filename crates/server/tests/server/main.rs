//! The server's behaviour tests, one module per area, built as one test
//! binary (`cargo test --workspace --test server`): the helpers in
//! `common/` are compiled once and the server is linked once, not once per
//! area. A test's name starts with its module (`e2e::…`, `health::…`), so
//! `cargo test --workspace --test server -- health::` runs one area.
//!
//! With `REDRIVE_TEST_BACKEND=postgres` the servers run on PostgreSQL
//! (`REDRIVE_TEST_DATABASE_URL`) instead of SQLite; CI runs the `e2e`,
//! `lifecycle`, `health`, `security`, `ops` and `console_http` modules a
//! second time that way.
//!
//! The console's browser tests stay a binary of their own
//! (`console_browser`, `harness = false` in `Cargo.toml`): they run
//! through the test kit's harness, which reports them ignored, with the
//! reason, where Chromium is missing.

#[path = "../common/mod.rs"]
mod common;

mod console_http;
mod console_render;
mod dialects;
mod e2e;
mod health;
mod lifecycle;
mod ops;
mod security;
