//! `xcomponent-ai schema`: prints the JSON Schema of component files, generated from the model.

use clap::Args;
use std::process::ExitCode;
use xcomponent_core::schema::component_json_schema;

/// Print the JSON Schema of component files (for editors and other tools).
#[derive(Debug, Args)]
#[command(after_help = "\
Use it in an editor with the YAML language server, for example with this first line in a
component file:  # yaml-language-server: $schema=./component.schema.json
  xcomponent-ai schema > component.schema.json")]
pub struct SchemaArgs {
    /// Print on one line instead of indented.
    #[arg(long)]
    compact: bool,
}

/// Runs `schema`.
pub fn run(args: SchemaArgs) -> anyhow::Result<ExitCode> {
    let schema = component_json_schema();
    let text = if args.compact {
        serde_json::to_string(&schema)?
    } else {
        serde_json::to_string_pretty(&schema)?
    };
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}
