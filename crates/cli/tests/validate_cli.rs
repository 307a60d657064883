//! Runs the built `xcomponent-ai` binary: `validate` exit codes and outputs, `schema`, `graph`
//! and `explain`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VALID: &str = "\
name: Orders
stateMachines:
  - name: Order
    initialState: Created
    states:
      - name: Created
      - name: Done
        type: final
    transitions:
      - {from: Created, to: Done, event: FINISH}
";

const INVALID: &str = "\
name: Orders
stateMachines:
  - name: Order
    initialState: Created
    states:
      - name: Created
      - name: Shipped
        type: final
    transitions:
      - {from: Created, to: Shiped, event: SHIP}
";

const WITH_WARNING: &str = "\
name: Orders
stateMachines:
  - name: Order
    initialState: Created
    colour: blue
    states: [{name: Created}]
";

/// A directory of its own for one test, with the given files written in it; removed on drop.
struct FixtureDir(PathBuf);

impl Drop for FixtureDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::ops::Deref for FixtureDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

fn fixture_dir(test: &str, files: &[(&str, &str)]) -> FixtureDir {
    let dir = std::env::temp_dir().join(format!("xcomponent-cli-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|error| panic!("cannot create {}: {error}", dir.display()));
    for (name, text) in files {
        std::fs::write(dir.join(name), text)
            .unwrap_or_else(|error| panic!("cannot write {name}: {error}"));
    }
    FixtureDir(dir)
}

fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xcomponent-ai"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|error| panic!("cannot run xcomponent-ai: {error}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn validate_exits_0_on_a_valid_file_and_1_on_an_invalid_one() {
    let dir = fixture_dir("exit-codes", &[("valid.yaml", VALID), ("invalid.yaml", INVALID)]);

    let valid = run_in(&dir, &["validate", "valid.yaml"]);
    assert_eq!(valid.status.code(), Some(0), "stderr: {}", text(&valid.stderr));
    assert_eq!(
        text(&valid.stdout),
        "valid.yaml: component Orders (1 machine): ok (0 errors, 0 warnings, 0 notes)\n"
    );
    assert_eq!(text(&valid.stderr), "");

    let invalid = run_in(&dir, &["validate", "invalid.yaml"]);
    assert_eq!(invalid.status.code(), Some(1));
    let stderr = text(&invalid.stderr);
    assert!(stderr.starts_with("invalid.yaml:10:29: error[XC0107]: "), "{stderr}");
    assert!(stderr.contains("= hint: did you mean \"Shipped\"?"), "{stderr}");
    assert!(text(&invalid.stdout).contains("FAILED (1 error"));

    let both = run_in(&dir, &["validate", "valid.yaml", "invalid.yaml"]);
    assert_eq!(both.status.code(), Some(1), "one bad file fails the run");
    assert_eq!(text(&both.stdout).lines().count(), 2, "one summary line per file");
}

#[test]
fn validate_fails_on_a_missing_file_and_on_warnings_when_strict() {
    let dir = fixture_dir("strict", &[("warning.yaml", WITH_WARNING)]);
    let missing = run_in(&dir, &["validate", "missing.yaml"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).starts_with("missing.yaml: error[XC0001]"));

    assert_eq!(run_in(&dir, &["validate", "warning.yaml"]).status.code(), Some(0));
    let strict = run_in(&dir, &["validate", "--strict", "warning.yaml"]);
    assert_eq!(strict.status.code(), Some(1));
    assert!(text(&strict.stderr).contains("error[XC0601]"));
}

#[test]
fn validate_json_output_is_one_document_on_stdout() {
    let dir = fixture_dir("json", &[("valid.yaml", VALID), ("invalid.yaml", INVALID)]);
    let output = run_in(&dir, &["validate", "--output", "json", "valid.yaml", "invalid.yaml"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(text(&output.stderr), "");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|error| panic!("not JSON ({error}): {}", text(&output.stdout)));
    assert_eq!(report["ok"], false);
    assert_eq!(report["files"][0]["ok"], true);
    let diagnostic = &report["files"][1]["diagnostics"][0];
    assert_eq!(diagnostic["code"], "XC0107");
    assert_eq!(diagnostic["severity"], "error");
    assert_eq!(diagnostic["line"], 10);
    assert_eq!(diagnostic["path"], "stateMachines[0].transitions[0].to");
}

#[test]
fn schema_graph_and_explain() {
    let dir = fixture_dir("others", &[("valid.yaml", VALID)]);

    let schema = run_in(&dir, &["schema"]);
    assert_eq!(schema.status.code(), Some(0));
    let schema: serde_json::Value = serde_json::from_slice(&schema.stdout).unwrap_or_default();
    assert!(schema["$defs"]["Transition"].is_object());

    let graph =
        run_in(&dir, &["graph", "valid.yaml", "--machine", "Order", "--current", "Created"]);
    assert_eq!(graph.status.code(), Some(0));
    let diagram = text(&graph.stdout);
    assert!(diagram.contains("stateDiagram-v2\n    [*] --> Created\n    Created --> Done : FINISH\n    Done --> [*]\n"), "{diagram}");
    assert!(diagram.contains("class Created current"));
    assert_eq!(run_in(&dir, &["graph", "valid.yaml", "--machine", "Nope"]).status.code(), Some(1));

    let explain = run_in(&dir, &["explain", "xc0107"]);
    assert_eq!(explain.status.code(), Some(0));
    assert!(text(&explain.stdout).starts_with("# XC0107"));
    assert_eq!(run_in(&dir, &["explain", "XC9999"]).status.code(), Some(1));
}
