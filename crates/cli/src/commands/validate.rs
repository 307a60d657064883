//! `xcomponent-ai validate FILE...`: loads and checks component files and reports every problem
//! with `file:line:column`, a stable code and a fix hint. Exit code 0 when no file has an error.

use clap::{Args, ValueEnum};
use serde::Serialize;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use xcomponent_core::diagnostic::{Diagnostic, SeverityCounts, has_errors};
use xcomponent_core::load::load_component_file;
use xcomponent_core::validate::{ValidateOptions, validate};

/// Check component files: YAML syntax, types, names and references, transition settings, guards.
#[derive(Debug, Args)]
#[command(after_help = "\
Each problem is printed as `file:line:column: severity[CODE]: message` followed by a fix hint;
`xcomponent-ai explain CODE` explains a code. Warnings (unknown keys, ignored keys, transitions
that can never fire...) do not fail validation unless --strict is given; notes never do.

Exit status: 0 when no file has an error, 1 otherwise.")]
pub struct ValidateArgs {
    /// Component files (YAML) to check.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,

    /// Treat warnings as errors.
    #[arg(long)]
    strict: bool,

    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text, value_name = "FORMAT")]
    output: OutputFormat,
}

/// How `validate` prints its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    /// Diagnostics on stderr, one summary line per file on stdout.
    Text,
    /// One JSON document on stdout: every file's diagnostics and counts.
    Json,
}

/// The result of checking one file.
#[derive(Debug, Serialize)]
struct FileReport {
    /// The file as given on the command line.
    file: String,
    /// The component name, when the file loaded.
    component: Option<String>,
    /// Number of machines, when the file loaded.
    machines: Option<usize>,
    /// No error.
    ok: bool,
    /// Diagnostics by severity.
    counts: SeverityCounts,
    /// Every diagnostic, sorted by position.
    diagnostics: Vec<Diagnostic>,
}

/// The whole run, as printed by `--output json`.
#[derive(Debug, Serialize)]
struct RunReport {
    /// No file has an error.
    ok: bool,
    /// One entry per file, in command-line order.
    files: Vec<FileReport>,
}

fn check_file(path: &Path, options: &ValidateOptions) -> FileReport {
    let (component, machines, diagnostics) = match load_component_file(path) {
        Ok(loaded) => {
            let diagnostics = validate(&loaded, options);
            (
                Some(loaded.component.name.clone()),
                Some(loaded.component.state_machines.len()),
                diagnostics,
            )
        }
        Err(diagnostics) => (None, None, diagnostics),
    };
    FileReport {
        file: path.display().to_string(),
        component,
        machines,
        ok: !has_errors(&diagnostics),
        counts: SeverityCounts::of(&diagnostics),
        diagnostics,
    }
}

fn summary_line(report: &FileReport) -> String {
    let verdict = if report.ok { "ok" } else { "FAILED" };
    match (&report.component, report.machines) {
        (Some(component), Some(machines)) => {
            let plural = if machines == 1 { "" } else { "s" };
            format!(
                "{}: component {component} ({machines} machine{plural}): {verdict} ({})",
                report.file, report.counts
            )
        }
        _ => format!("{}: {verdict} ({})", report.file, report.counts),
    }
}

/// Runs `validate`.
pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let options = ValidateOptions { strict: args.strict };
    let reports: Vec<FileReport> =
        args.files.iter().map(|file| check_file(file, &options)).collect();
    let ok = reports.iter().all(|report| report.ok);
    match args.output {
        OutputFormat::Text => {
            let mut stderr = std::io::stderr().lock();
            let mut stdout = std::io::stdout().lock();
            for report in &reports {
                for diagnostic in &report.diagnostics {
                    writeln!(stderr, "{diagnostic}")?;
                }
                stderr.flush()?;
                writeln!(stdout, "{}", summary_line(report))?;
                stdout.flush()?;
            }
        }
        OutputFormat::Json => {
            let run = RunReport { ok, files: reports };
            println!("{}", serde_json::to_string_pretty(&run)?);
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
