//! `xcomponent-ai graph FILE`: prints a Mermaid `stateDiagram-v2` per machine of a component.

use anyhow::bail;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use xcomponent_core::load::load_component_file;
use xcomponent_core::mermaid::state_diagram;

/// Print the state diagram of each machine of a component, as Mermaid text.
#[derive(Debug, Args)]
#[command(after_help = "\
Edges are labelled with their event, plus [timeout 30s], [auto], [creates Machine],
[creates Component/Machine], [sends EVENT to Component/Machine] and [if guard] markers.
Final and error states lead to [*]. Paste the output into any Mermaid renderer, or use
--markdown to get fenced blocks for a Markdown file.")]
pub struct GraphArgs {
    /// Component file (YAML).
    #[arg(value_name = "FILE")]
    file: PathBuf,

    /// Only this machine.
    #[arg(long, value_name = "NAME")]
    machine: Option<String>,

    /// Highlight this state (with --machine).
    #[arg(long, value_name = "STATE", requires = "machine")]
    current: Option<String>,

    /// Wrap each diagram in a ```mermaid block under a `## Machine` heading.
    #[arg(long)]
    markdown: bool,
}

/// Runs `graph`.
pub fn run(args: GraphArgs) -> anyhow::Result<ExitCode> {
    let loaded = match load_component_file(&args.file) {
        Ok(loaded) => loaded,
        Err(diagnostics) => {
            for diagnostic in &diagnostics {
                eprintln!("{diagnostic}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let machines = &loaded.component.state_machines;
    let selected: Vec<_> = match &args.machine {
        Some(name) => machines.iter().filter(|machine| &machine.name == name).collect(),
        None => machines.iter().collect(),
    };
    if let (Some(name), true) = (&args.machine, selected.is_empty()) {
        let known: Vec<&str> = machines.iter().map(|machine| machine.name.as_str()).collect();
        bail!(
            "component {} has no machine {name} (machines: {})",
            loaded.component.name,
            known.join(", ")
        );
    }
    let mut blocks = Vec::with_capacity(selected.len());
    for machine in selected {
        let diagram = state_diagram(machine, args.current.as_deref());
        blocks.push(if args.markdown {
            format!("## {}\n\n```mermaid\n{diagram}```\n", machine.name)
        } else {
            format!("---\ntitle: {}\n---\n{diagram}", machine.name)
        });
    }
    print!("{}", blocks.join("\n"));
    Ok(ExitCode::SUCCESS)
}
