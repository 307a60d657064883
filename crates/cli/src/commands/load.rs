//! `xcomponent-ai load FILE...`: the original's command. Loads each file as `run` would (parse,
//! validate, compile) and prints the component's name and, per machine, its state and
//! transition counts. Invalid files print their diagnostics, as `validate` does.

use super::run::EXIT_INVALID_INPUT;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use xcomponent_cli::offline::load::{LoadError, load_definitions, print_diagnostics};

/// Load component files and print what they contain (component, machines, counts).
#[derive(Debug, Args)]
#[command(after_help = "\
Example:
  xcomponent-ai load order.yaml
  Component: OrderComponent (version 1.0.0)
    Order: 4 states, 3 transitions (entry)

`validate` reports every problem with a fix hint; `graph` draws the machines.

Exit status: 0 when every file loads, 2 when one has an error (diagnostics on stderr).")]
pub struct LoadArgs {
    /// Component files (YAML).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// Runs the command.
pub fn run(args: LoadArgs) -> Result<ExitCode> {
    let loaded = match load_definitions(&args.files) {
        Ok(loaded) => loaded,
        Err(LoadError::Invalid(diagnostics)) => {
            print_diagnostics(&diagnostics);
            return Ok(ExitCode::from(EXIT_INVALID_INPUT));
        }
        Err(LoadError::Usage(message)) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(EXIT_INVALID_INPUT));
        }
    };
    print_diagnostics(&loaded.warnings);
    for definition in &loaded.definitions {
        match definition.model.version.as_deref() {
            Some(version) => println!("Component: {} (version {version})", definition.name),
            None => println!("Component: {}", definition.name),
        }
        for (index, machine) in definition.machines.iter().enumerate() {
            let entry = definition.entry_machine.is_some_and(|entry| usize::from(entry) == index);
            println!(
                "  {}: {} states, {} transitions{}",
                machine.name,
                machine.states.len(),
                machine.transitions.len(),
                if entry { " (entry)" } else { "" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
