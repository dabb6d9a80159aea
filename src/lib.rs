//! jitgate: a just-in-time access appliance. One synchronous binary that keeps its
//! state in one SQLite file, serves a JSON API over TLS, and ends every grant by itself.
//!
//! Layering (see DESIGN.md): `domain` knows no I/O; `store` speaks SQL in domain types
//! and never imports `server`; `server` translates HTTP to domain calls and back.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

#[macro_use]
pub mod log;
pub mod audit;
pub mod cli;
pub mod config;
pub mod datadir;
pub mod domain;
pub mod error;
pub mod expiry;
pub mod gateway;
pub mod hub;
pub mod metrics;
pub mod notify;
pub mod preflight;
pub mod sdnotify;
pub mod secret;
pub mod server;
pub mod store;
pub mod time;
pub mod tls;

pub use error::{Error, Result};
