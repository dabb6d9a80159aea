//! The one error type of jitgate. Every variant knows its HTTP status, a stable
//! machine code and a message that is safe to show a user; causes such as SQLite or
//! I/O errors are kept for the log only and reach the client as a generic `internal`.

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed input: bad JSON, unknown field, bad name, bad query parameter.
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    #[error("duration {requested} exceeds the maximum of {max} for {connection}")]
    DurationTooLong { requested: String, max: String, connection: String },
    #[error("a reason is required to request access to {0}")]
    ReasonRequired(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("method not allowed here; allowed: {0}")]
    MethodNotAllowed(String),
    #[error("{what} {name} not found")]
    NotFound { what: &'static str, name: String },
    /// A state conflict other than a lifecycle transition (duplicate name, in use, …).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("request {id} is {status}: it cannot be {action}")]
    WrongState { id: String, status: String, action: &'static str },
    #[error("{0}")]
    TooLarge(String),
    #[error("send the body as Content-Type: application/json")]
    MediaType,
    #[error("too many attempts; retry in {retry_after} seconds")]
    RateLimited { retry_after: u64 },
    #[error("{0}")]
    Unavailable(String),
    /// An error answered by a jitgate server (client side).
    #[error("{message}")]
    Remote { status: u16, code: String, message: String },
    /// The server could not be reached or spoke nonsense (client side).
    #[error("{0}")]
    Connect(String),
    #[error("storage error")]
    Storage(#[from] rusqlite::Error),
    #[error("i/o error")]
    Io(#[from] std::io::Error),
    #[error("internal error")]
    Internal(String),
    /// Refusal to start: bad configuration or an unsafe data directory.
    #[error("{0}")]
    Startup(String),
}

impl Error {
    pub fn bad(code: &'static str, message: impl fmt::Display) -> Error {
        Error::BadRequest { code, message: message.to_string() }
    }

    pub fn conflict(code: &'static str, message: impl fmt::Display) -> Error {
        Error::Conflict { code, message: message.to_string() }
    }

    pub fn not_found(what: &'static str, name: impl fmt::Display) -> Error {
        Error::NotFound { what, name: name.to_string() }
    }

    pub fn status(&self) -> u16 {
        match self {
            Error::BadRequest { .. } | Error::DurationTooLong { .. } | Error::ReasonRequired(_) => 400,
            Error::Unauthenticated(_) => 401,
            Error::Forbidden(_) => 403,
            Error::NotFound { .. } => 404,
            Error::MethodNotAllowed(_) => 405,
            Error::Conflict { .. } | Error::WrongState { .. } => 409,
            Error::TooLarge(_) => 413,
            Error::MediaType => 415,
            Error::RateLimited { .. } => 429,
            Error::Unavailable(_) => 503,
            Error::Remote { status, .. } => *status,
            Error::Connect(_) => 502,
            Error::Storage(_) | Error::Io(_) | Error::Internal(_) | Error::Startup(_) => 500,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Error::BadRequest { code, .. } | Error::Conflict { code, .. } => code,
            Error::DurationTooLong { .. } => "duration_too_long",
            Error::ReasonRequired(_) => "reason_required",
            Error::Unauthenticated(_) => "unauthenticated",
            Error::Forbidden(_) => "forbidden",
            Error::NotFound { .. } => "not_found",
            Error::MethodNotAllowed(_) => "method_not_allowed",
            Error::WrongState { .. } => "wrong_state",
            Error::TooLarge(_) => "body_too_large",
            Error::MediaType => "unsupported_media_type",
            Error::RateLimited { .. } => "rate_limited",
            Error::Unavailable(_) => "unavailable",
            Error::Remote { .. } => "remote",
            Error::Connect(_) => "connect",
            Error::Storage(_) | Error::Io(_) | Error::Internal(_) => "internal",
            Error::Startup(_) => "startup",
        }
    }

    /// The text a client may see. Internal causes never leave the process.
    pub fn user_message(&self) -> String {
        match self {
            Error::Storage(_) | Error::Io(_) | Error::Internal(_) => {
                "internal error; the server log has the details".to_string()
            }
            other => other.to_string(),
        }
    }

    /// The text for the server log: includes the cause.
    pub fn log_detail(&self) -> String {
        match self {
            Error::Storage(e) => format!("storage: {e}"),
            Error::Io(e) => format!("io: {e}"),
            Error::Internal(m) => format!("internal: {m}"),
            other => other.to_string(),
        }
    }

    /// Exit code for the command line: 2 usage/config, 1 everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::BadRequest { .. } | Error::Startup(_) => 2,
            _ => 1,
        }
    }
}
