//! The command line (clap). `main` parses, calls `run`, and maps the result to an
//! exit code; each command lives in its own module.

mod admin;
mod serve;

use crate::error::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "jitgate", version, about = "Just-in-time access: time-boxed, approved, audited access to production")]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (HTTPS on 127.0.0.1:8443 with a self-signed certificate by default).
    Serve(Box<serve::ServeArgs>),
    /// Offline work on a stopped server's data dir.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
}

/// Runs the parsed command; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Admin(cmd) => admin::run(cmd),
    }
}
