//! Integration tests: the real application on a random port, each test with its own fresh
//! PostgreSQL database (`#[sqlx::test]`). Needs DATABASE_URL pointing at a server where new
//! databases may be created (see README).

// Assertions fetch rows as tuples and compare them whole; naming each tuple type would only
// move the column list away from the query that defines it.
#![allow(clippy::type_complexity)]

mod bad_input;
mod call_log;
mod client;
mod end_to_end;
mod fake_platform;
mod fee_callbacks;
mod helpers;
mod migrations;
mod ops;
mod resilience;
mod signatures;
mod status_callbacks;
