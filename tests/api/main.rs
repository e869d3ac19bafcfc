//! Integration tests: the real application on a random port, each test with its own fresh
//! PostgreSQL database (`#[sqlx::test]`). Needs DATABASE_URL pointing at a server where new
//! databases may be created (see README).

// Assertions fetch rows as tuples and compare them whole; naming each tuple type would only
// move the column list away from the query that defines it.
#![allow(clippy::type_complexity)]

mod abuse;
mod api_auth;
mod api_helpers;
mod bad_input;
mod call_api;
mod call_log;
mod cdr_api;
mod client;
mod config;
mod console;
mod console_browser;
mod durability;
mod end_to_end;
mod exports;
mod fake_platform;
mod fee_callbacks;
mod fuzz;
mod fuzz_http;
mod helpers;
mod kpis;
mod migrations;
mod mutate;
mod openapi;
mod ops;
mod reprocess;
mod resilience;
mod signatures;
mod startup;
mod status_callbacks;
mod stream;
mod throughput;
