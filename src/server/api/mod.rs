//! HTTP handlers: each translates JSON to a store/domain call and back, nothing more.
//! Bodies are strict (`deny_unknown_fields`); names are checked by the domain.

pub mod access;
pub mod audit;
pub mod connections;
pub mod groups;
pub mod integrations;
pub mod outbox;
pub mod requests;
pub mod sessions;
pub mod system;
pub mod tokens;
pub mod ui;
pub mod users;
