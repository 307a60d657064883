//! Golden tests over the reference examples: every YAML under `shared/reference/examples` is
//! driven by a script of ours (`tests/golden/<name>.events.json`) through the same offline
//! session `run` uses (memory store, one shard, manual clock), with business handlers where an
//! example relies on them, and the trace is compared with a reviewed snapshot
//! (`tests/snapshots/golden__<name>.snap`).
//!
//! A case file is `{"about", "files"?, "scenarios": [{"name", "about", "machine", "component"?,
//! "context"?, "events"}]}`; `files` lists more examples to host in the same runtime. Every
//! scenario starts a fresh runtime. Snapshots name instances by trace label and give times
//! relative to the start, so they are deterministic.
//!
//! When the reference folder is absent the test says so loudly and passes, unless
//! `XC_REQUIRE_REFERENCE` is true (scripts/test.sh turns it on in CI).

#[path = "golden/handlers.rs"]
mod golden_handlers;

use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use xcomponent_cli::offline::load::{LoadError, find_machine, load_definitions};
use xcomponent_cli::offline::report::final_states_text;
use xcomponent_cli::offline::script::{Item, parse_items};
use xcomponent_cli::offline::session::Session;
use xcomponent_core::diagnostic::Diagnostic;
use xcomponent_core::instance::Context;

/// Start of the manual clock (any fixed instant: the trace shows times relative to it).
const T0: i64 = 1_700_000_000_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    about: String,
    #[serde(default)]
    files: Vec<String>,
    scenarios: Vec<Scenario>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    name: String,
    about: String,
    machine: String,
    #[serde(default)]
    component: Option<String>,
    #[serde(default)]
    context: Context,
    events: Value,
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `<repo>/../shared/reference/examples`.
fn examples_dir() -> PathBuf {
    manifest_dir().join("../../../shared/reference/examples")
}

fn case_dir() -> PathBuf {
    manifest_dir().join("tests/golden")
}

/// Every YAML file under `dir`, as paths relative to it, sorted.
fn yaml_files(dir: &Path, prefix: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let relative = prefix.join(entry.file_name());
        if path.is_dir() {
            yaml_files(&path, &relative, out);
        } else if path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml") {
            out.push(relative);
        }
    }
    out.sort();
}

/// `distributed/order-component.yaml` → `distributed-order-component`.
fn case_name(relative: &Path) -> String {
    relative.with_extension("").to_string_lossy().replace(['/', '\\'], "-")
}

fn render_diagnostic(diagnostic: &Diagnostic, examples: &Path) -> String {
    let file = Path::new(&diagnostic.file)
        .strip_prefix(examples)
        .map(|path| path.display().to_string())
        .unwrap_or_else(|_| diagnostic.file.clone());
    format!(
        "{file}:{}:{}: {}[{}]: {}",
        diagnostic.line,
        diagnostic.column,
        diagnostic.severity,
        diagnostic.code,
        diagnostic.message
    )
}

/// Runs one case and renders its golden text.
fn run_case(name: &str, relative: &Path, examples: &Path) -> Result<String, String> {
    let case_path = case_dir().join(format!("{name}.events.json"));
    let text = std::fs::read_to_string(&case_path).map_err(|error| {
        format!("no script for {}: write {} ({error})", relative.display(), case_path.display())
    })?;
    let case: Case =
        serde_json::from_str(&text).map_err(|error| format!("{}: {error}", case_path.display()))?;
    let mut files = vec![examples.join(relative)];
    files.extend(case.files.iter().map(|file| examples.join(file)));
    let mut out = format!("# {}\n", case.about);
    out.push_str(&format!(
        "files: {}\n",
        std::iter::once(relative.display().to_string())
            .chain(case.files.iter().cloned())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let loaded = match load_definitions(&files) {
        Ok(loaded) => loaded,
        Err(LoadError::Invalid(diagnostics)) => {
            out.push_str("does not load; no scenario ran:\n");
            for diagnostic in &diagnostics {
                out.push_str(&format!("  {}\n", render_diagnostic(diagnostic, examples)));
            }
            return Ok(out);
        }
        Err(LoadError::Usage(message)) => return Err(format!("{name}: {message}")),
    };
    for diagnostic in &loaded.warnings {
        out.push_str(&format!("  {}\n", render_diagnostic(diagnostic, examples)));
    }
    drop(loaded);
    for scenario in &case.scenarios {
        let items = parse_items(&scenario.events)
            .map_err(|error| format!("{name}/{}: {error:#}", scenario.name))?;
        out.push_str(&format!("\n## {}: {}\n", scenario.name, scenario.about));
        let definitions =
            load_definitions(&files).map_err(|_| format!("{name}: reload failed"))?.definitions;
        let component =
            find_machine(&definitions, &scenario.machine, scenario.component.as_deref())
                .map_err(|error| format!("{name}/{}: {error}", scenario.name))?
                .name
                .to_string();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| error.to_string())?;
        let handlers = golden_handlers::for_case(name);
        let trace = runtime.block_on(drive(definitions, handlers, &component, scenario, &items))?;
        out.push_str(&trace);
    }
    Ok(out)
}

async fn drive(
    definitions: Vec<xcomponent_core::definition::Definition>,
    handlers: xcomponent_runtime::Handlers,
    component: &str,
    scenario: &Scenario,
    items: &[Item],
) -> Result<String, String> {
    let (mut session, existing) =
        Session::start(definitions, handlers, T0).await.map_err(|error| format!("{error:#}"))?;
    let mut out = String::new();
    let push = |lines: Vec<xcomponent_cli::offline::trace::Line>, out: &mut String| {
        for line in lines {
            out.push_str(&line.text);
            out.push('\n');
        }
    };
    push(existing, &mut out);
    match session.create_main(component, &scenario.machine, scenario.context.clone()).await {
        Ok(lines) => push(lines, &mut out),
        Err(error) => out.push_str(&format!("!! {error:#}\n")),
    }
    for item in items {
        if let Some(note) = item_comment(item) {
            out.push_str(&format!("          -- {note}\n"));
        }
        match session.apply(item).await {
            Ok(lines) => push(lines, &mut out),
            Err(error) => {
                out.push_str(&format!("!! {error:#}\n"));
                break;
            }
        }
    }
    out.push_str("final states:\n");
    for line in final_states_text(&session.final_states().await, session.tracker()) {
        out.push_str(&line);
        out.push('\n');
    }
    session.shutdown().await;
    Ok(out)
}

/// The `comment` of an item, shown in the trace to say what the step is for.
fn item_comment(item: &Item) -> Option<String> {
    serde_json::from_str::<Value>(&item.text).ok()?.get("comment")?.as_str().map(str::to_owned)
}

#[test]
fn reference_examples_match_their_golden_traces() {
    let examples = examples_dir();
    if !examples.is_dir() {
        eprintln!(
            "\n!!!!!!!! REFERENCE EXAMPLES ABSENT: {} does not exist; the golden tests did not run !!!!!!!!\n",
            examples.display()
        );
        assert!(
            !std::env::var("XC_REQUIRE_REFERENCE").is_ok_and(|value| {
                xcomponent_core::flag::parse(&value)
                    .unwrap_or_else(|error| panic!("XC_REQUIRE_REFERENCE: {error}"))
            }),
            "XC_REQUIRE_REFERENCE is on but {} is absent",
            examples.display()
        );
        return;
    }
    let examples = examples.canonicalize().unwrap_or(examples);
    let mut files = Vec::new();
    yaml_files(&examples, Path::new(""), &mut files);
    assert!(!files.is_empty(), "no YAML under {}", examples.display());
    let mut failures = Vec::new();
    let mut names = Vec::new();
    for relative in &files {
        let name = case_name(relative);
        names.push(name.clone());
        let outcome = run_case(&name, relative, &examples).and_then(|text| {
            std::panic::catch_unwind(|| {
                insta::with_settings!({ omit_expression => true, description => format!("golden trace of {}", relative.display()) }, {
                    insta::assert_snapshot!(name.as_str(), text);
                });
            })
            .map_err(|_| format!("{name}: the trace differs from its snapshot (see the diff above; review with `cargo insta review`)"))
        });
        if let Err(message) = outcome {
            failures.push(message);
        }
    }
    let stale: Vec<String> = std::fs::read_dir(case_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            entry
                .file_name()
                .to_str()
                .and_then(|file| file.strip_suffix(".events.json"))
                .map(str::to_owned)
        })
        .filter(|case| !names.contains(case))
        .collect();
    for case in stale {
        failures.push(format!("tests/golden/{case}.events.json matches no example"));
    }
    assert!(
        failures.is_empty(),
        "{} golden case(s) failed:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
    eprintln!("golden: {} examples checked", files.len());
}
