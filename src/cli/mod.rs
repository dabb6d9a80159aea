//! The command line (clap). `main` parses, calls `run`, and maps the result to an
//! exit code; each command lives in its own module.
//!
//! Exit codes (documented in README and `jitgate --help`):
//! 0 success (for `connect`: access granted, and for proxied kinds ended normally),
//! 1 error, 2 bad usage or configuration, 3 rejected, 4 cancelled, 5 revoked.

/// `println!` that survives a closed pipe (see `output::say`).
macro_rules! say {
    ($($arg:tt)*) => { $crate::cli::output::say(&format!($($arg)*)) };
}

mod admin;
mod api;
mod backup;
mod config_check;
mod connect;
mod login;
mod manage;
mod output;
mod profile;
mod requests;
mod serve;
mod sessions;

use crate::error::Result;
use api::{Api, Target};
use clap::{Args, CommandFactory, Parser, Subcommand};
use output::Out;
use std::path::PathBuf;

pub const EXIT_REJECTED: i32 = 3;
pub const EXIT_CANCELLED: i32 = 4;
pub const EXIT_REVOKED: i32 = 5;

const AFTER_HELP: &str = "\
Exit codes: 0 success, 1 error, 2 bad usage or configuration, 3 rejected,
4 cancelled, 5 revoked.

Examples:
  jitgate serve
  jitgate login https://jitgate.internal:8443 --username alice --fingerprint ab:cd:…
  jitgate connect prod-postgres --duration 2h --reason INC-1234
  jitgate requests list --reviewable
  jitgate requests approve req_5f2c… --comment 'ok for INC-1234'";

#[derive(Parser, Debug)]
#[command(name = "jitgate", version, about = "Just-in-time access: time-boxed, approved, audited access to production", after_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Where the client connects and how it proves itself; flags win over the
/// environment, which wins over the profile saved by `jitgate login`.
#[derive(Args, Debug, Clone)]
struct Global {
    /// Server URL, e.g. https://jitgate.internal:8443.
    #[arg(long, global = true, env = "JITGATE_SERVER", value_name = "URL")]
    server: Option<String>,
    /// API token (prefer `jitgate login`, which stores it with mode 0600).
    #[arg(long, global = true, env = "JITGATE_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// SHA-256 fingerprint of a self-signed server certificate to trust (hex, colons optional).
    #[arg(long, global = true, env = "JITGATE_FINGERPRINT", value_name = "FP")]
    fingerprint: Option<String>,
    /// A CA certificate (PEM) that signs the server's certificate.
    #[arg(long, global = true, env = "JITGATE_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    /// Print JSON for scripts instead of text for people.
    #[arg(long, global = true)]
    json: bool,
}

impl Global {
    fn api(&self) -> Result<Api> {
        let profile = profile::load()?;
        Api::new(Target::resolve(
            self.server.clone(),
            self.token.clone(),
            self.fingerprint.clone(),
            self.ca_cert.clone(),
            &profile,
        )?)
    }

    fn out(&self) -> Out {
        Out::new(self.json)
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (HTTPS on 127.0.0.1:8443 with a self-signed certificate by default).
    Serve(Box<serve::ServeArgs>),
    /// Save a server, a token and the server's certificate pin for later commands.
    Login(login::LoginArgs),
    /// Ask for access to a connection and wait for approval.
    Connect(connect::ConnectArgs),
    /// List, show and decide access requests.
    #[command(subcommand)]
    Requests(requests::RequestsCommand),
    /// Manage connections and their access policy (admins).
    #[command(subcommand)]
    Connections(manage::ConnectionsCommand),
    /// Manage users (admins).
    #[command(subcommand)]
    Users(manage::UsersCommand),
    /// Manage groups and their members (admins).
    #[command(subcommand)]
    Groups(manage::GroupsCommand),
    /// Create, list and revoke API tokens.
    #[command(subcommand)]
    Tokens(manage::TokensCommand),
    /// Sessions of `jitgate connect`: their streams and the SQL they sent.
    #[command(subcommand)]
    Sessions(sessions::SessionsCommand),
    /// Read, verify and export the audit trail (admins).
    #[command(subcommand)]
    Audit(manage::AuditCommand),
    /// Show who the server thinks you are.
    Whoami,
    /// Offline work on a stopped server's data dir.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Copy the database to FILE, consistently, while the server runs.
    Backup(backup::BackupArgs),
    /// Check a server config file (unknown keys named) and print the effective settings.
    #[command(subcommand)]
    Config(config_check::ConfigCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff).
    Man,
}

/// Runs the parsed command; returns the process exit code.
pub fn run(cli: Cli) -> Result<i32> {
    let g = cli.global;
    match cli.command {
        Command::Serve(args) => serve::run(*args),
        Command::Login(args) => login::run(&g, args),
        Command::Connect(args) => connect::run(&g.api()?, g.out(), args),
        Command::Requests(cmd) => requests::run(&g.api()?, g.out(), cmd),
        Command::Connections(cmd) => manage::connections(&g.api()?, g.out(), cmd),
        Command::Users(cmd) => manage::users(&g.api()?, g.out(), cmd),
        Command::Groups(cmd) => manage::groups(&g.api()?, g.out(), cmd),
        Command::Tokens(cmd) => manage::tokens(&g.api()?, g.out(), cmd),
        Command::Sessions(cmd) => sessions::run(&g.api()?, g.out(), cmd),
        Command::Audit(cmd) => manage::audit(&g.api()?, g.out(), cmd),
        Command::Whoami => manage::whoami(&g.api()?, g.out()),
        Command::Admin(cmd) => admin::run(g.out(), cmd),
        Command::Backup(args) => backup::run(g.out(), args),
        Command::Config(cmd) => config_check::run(g.out(), cmd),
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "jitgate", &mut buf);
            output::say(String::from_utf8_lossy(&buf).trim_end());
            Ok(0)
        }
        Command::Man => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut buf)?;
            output::say(String::from_utf8_lossy(&buf).trim_end());
            Ok(0)
        }
    }
}

/// Reads one line (a password or token) from standard input, for scripts.
fn read_stdin_line() -> Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
