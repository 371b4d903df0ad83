//! The CLI's tests that run the real `redrive` binary, one module per
//! area, built as one test binary (`cargo test --workspace --test cli`):
//! the helpers in `common/` are compiled once and the binary linked once,
//! not once per area. A test's name starts with its module (`docs::…`,
//! `ops::…`), so `cargo test --workspace --test cli -- ops::` runs one
//! area.
//!
//! The suites that run through the test kit's harness (`multinode`,
//! `exactly_once`, `durability`, `bench_console`; `harness = false` in
//! `Cargo.toml`) stay binaries of their own: the harness reports a test
//! whose need (PostgreSQL, root) is missing as ignored, with the reason.

#[path = "../common/mod.rs"]
mod common;

mod bench_delivery;
mod bench_retries;
mod cli;
mod cli_reference;
mod dialects;
mod docs;
mod ops;
mod security;
