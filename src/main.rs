//! The `jitgate` binary: parse, run, map the outcome to an exit code.

use clap::Parser;

fn main() {
    let cli = jitgate::cli::Cli::parse();
    let code = match jitgate::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            // Through the log for `serve` (JSON when asked, one line); the other
            // commands print for a person, with the same escaping.
            jitgate::log::fatal(&e.log_detail());
            e.exit_code()
        }
    };
    std::process::exit(code);
}
