//! `xcomponent-ai explain CODE`: prints the explanation page of a diagnostic code.

use anyhow::bail;
use clap::Args;
use std::process::ExitCode;
use xcomponent_core::diagnostic::codes;

/// Explain a diagnostic code (what it means, why, how to fix it); without a code, list them all.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The code, as printed by `validate` (`XC0107`; `xc0107` and `0107` work too).
    #[arg(value_name = "CODE")]
    code: Option<String>,
}

/// Runs `explain`.
pub fn run(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let Some(code) = args.code else {
        for info in codes::ALL {
            println!("{}  {}", info.code, info.title);
        }
        return Ok(ExitCode::SUCCESS);
    };
    match codes::lookup(&code) {
        Some(info) => {
            print!("{}", info.page);
            Ok(ExitCode::SUCCESS)
        }
        None => bail!("unknown code {code}: `xcomponent-ai explain` lists the codes"),
    }
}
