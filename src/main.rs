//! The `jitgate` binary: parse, run, map the outcome to an exit code.

use clap::Parser;

fn main() {
    let cli = jitgate::cli::Cli::parse();
    let code = match jitgate::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("jitgate: {}", e.log_detail());
            e.exit_code()
        }
    };
    std::process::exit(code);
}
