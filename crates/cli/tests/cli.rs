//! The built `xcomponent-ai` binary: `init`, `run` and `simulate` on a project made by `init` in a
//! temporary folder, their outputs, and their exit codes (0 ok, 1 runtime error or no
//! transition, 2 invalid input).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_xcomponent-ai");

const SMALL_ORDER: &str = r#"{"orderId": "A-1", "amount": 250, "address": "1 Main Street"}"#;
const LARGE_ORDER: &str = r#"{"orderId": "A-2", "amount": 5000, "address": "2 Main Street"}"#;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn xc(dir: &Path, args: &[&str]) -> Run {
    let Output { status, stdout, stderr } =
        Command::new(BIN).current_dir(dir).args(args).output().expect("the binary runs");
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// A project made by `init` in a fresh temporary folder: (guard, project dir).
fn project() -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().expect("temp dir");
    let made = xc(temp.path(), &["init", "shop"]);
    assert_eq!(made.code, Some(0), "init failed: {}", made.stderr);
    let dir = temp.path().join("shop");
    (temp, dir)
}

#[test]
fn init_creates_a_project_that_validates_and_refuses_to_overwrite() {
    let (temp, dir) = project();
    for file in ["components/shop.yaml", "README.md", "events.json"] {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    let yaml = std::fs::read_to_string(dir.join("components/shop.yaml")).unwrap_or_default();
    assert!(yaml.contains("name: Shop"), "component named after the project:\n{yaml}");
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap_or_default();
    assert!(
        readme.contains("xcomponent-ai run components/shop.yaml")
            && readme.contains("xcomponent-ai validate components/shop.yaml")
    );
    let valid = xc(&dir, &["validate", "--strict", "components/shop.yaml"]);
    assert_eq!(
        valid.code,
        Some(0),
        "the generated component validates cleanly: {}{}",
        valid.stdout,
        valid.stderr
    );

    let again = xc(temp.path(), &["init", "shop"]);
    assert_eq!(again.code, Some(1));
    assert!(again.stderr.contains("already exists"), "{}", again.stderr);
    let bad = xc(temp.path(), &["init", "9lives"]);
    assert_ne!(bad.code, Some(0));
    assert!(bad.stderr.contains("must start with a letter"), "{}", bad.stderr);
    assert!(!temp.path().join("9lives").exists());
}

#[test]
fn run_with_the_generated_events_delivers_the_order() {
    let (_temp, dir) = project();
    let run = xc(
        &dir,
        &[
            "run",
            "components/shop.yaml",
            "--machine",
            "Order",
            "--context",
            SMALL_ORDER,
            "--events",
            "@events.json",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let expected = [
        "Order#1 created in Draft",
        "Order#1 Draft --SUBMIT--> AwaitingPayment",
        "Order#1 AwaitingPayment --PAY--> Shipping [inter_machine]",
        "Shipment#2 created in Preparing (child of Order#1) {\"address\":\"1 Main Street\",\"orderId\":\"A-1\"}",
        "Shipment#2 InTransit --DELIVER--> Delivered => completed",
        "Order#1 Shipping --SHIPMENT_DELIVERED--> Delivered => completed",
        "final states:",
    ];
    let mut rest = run.stdout.as_str();
    for line in expected {
        let Some(at) = rest.find(line) else {
            panic!("missing (or out of order) {line:?} in:\n{}", run.stdout)
        };
        rest = &rest[at + line.len()..];
    }
}

#[test]
fn run_moves_the_clock_and_fires_timeouts_at_their_deadline() {
    let (_temp, dir) = project();
    let run = xc(
        &dir,
        &[
            "run",
            "components/shop.yaml",
            "-m",
            "Order",
            "-c",
            LARGE_ORDER,
            "-e",
            r#"["SUBMIT", "APPROVE", {"advanceMs": 60000}]"#,
            "--advance-ms",
            "3600000",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.contains("Order#1 Draft --SUBMIT--> AwaitingApproval"),
        "the guard routes 5000 to approval:\n{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "+15min  Order#1 AwaitingPayment --PAYMENT_TIMEOUT--> Cancelled [timeout] => error"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn run_json_output_is_one_object_per_line() {
    let (_temp, dir) = project();
    let run = xc(
        &dir,
        &[
            "run",
            "components/shop.yaml",
            "-m",
            "Order",
            "-c",
            SMALL_ORDER,
            "-e",
            r#"["SUBMIT"]"#,
            "--output",
            "json",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{line}: {error}")))
        .collect();
    let kinds: Vec<&str> = lines.iter().filter_map(|line| line["kind"].as_str()).collect();
    assert_eq!(kinds, ["instance_created", "state_change", "final_state"]);
    assert_eq!(lines[1]["newState"], "AwaitingPayment");
    assert_eq!(lines[1]["instance"], "Order#1");
    assert_eq!(lines[2]["currentState"], "AwaitingPayment");
    assert_eq!(lines[2]["pendingTimers"][0]["event"], "PAYMENT_TIMEOUT");
}

#[test]
fn run_reports_bad_events_by_item() {
    let (_temp, dir) = project();
    let bad_item = xc(
        &dir,
        &["run", "components/shop.yaml", "-m", "Order", "-e", r#"["SUBMIT", {"typ": "PAY"}]"#],
    );
    assert_eq!(bad_item.code, Some(2));
    assert!(
        bad_item.stderr.contains("item 2 `{\"typ\":\"PAY\"}` is wrong: unknown key \"typ\""),
        "{}",
        bad_item.stderr
    );
    let not_json = xc(&dir, &["run", "components/shop.yaml", "-m", "Order", "-e", r#"["SUBMIT""#]);
    assert_eq!(not_json.code, Some(2));
    assert!(not_json.stderr.contains("--events is not valid JSON"), "{}", not_json.stderr);
    let bad_context = xc(&dir, &["run", "components/shop.yaml", "-m", "Order", "-c", "[1, 2]"]);
    assert_eq!(bad_context.code, Some(2));
    assert!(
        bad_context.stderr.contains("--context must be a JSON object"),
        "{}",
        bad_context.stderr
    );
    let missing_file =
        xc(&dir, &["run", "components/shop.yaml", "-m", "Order", "-e", "@nope.json"]);
    assert_eq!(missing_file.code, Some(2));
    assert!(missing_file.stderr.contains("cannot read nope.json"), "{}", missing_file.stderr);
    let no_machine = xc(&dir, &["run", "components/shop.yaml", "-m", "Invoice"]);
    assert_eq!(no_machine.code, Some(2));
    assert!(
        no_machine.stderr.contains("no machine named Invoice (machines: Order, Shipment)"),
        "{}",
        no_machine.stderr
    );
}

#[test]
fn run_refuses_invalid_yaml_with_diagnostics() {
    let temp = tempfile::tempdir().expect("temp dir");
    let file = temp.path().join("broken.yaml");
    std::fs::write(&file, "name: Broken\nstateMachines:\n  - name: M\n    initialState: Nowhere\n    states: [{name: A}]\n").expect("write");
    let run = xc(temp.path(), &["run", "broken.yaml", "-m", "M", "-e", r#"["GO"]"#]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("broken.yaml:4:19: error[XC0105]"), "{}", run.stderr);
    assert!(run.stderr.contains("nothing was run"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
}

#[test]
fn run_fails_on_runtime_errors_after_printing_the_trace() {
    let (_temp, dir) = project();
    let finished = xc(
        &dir,
        &[
            "run",
            "components/shop.yaml",
            "-m",
            "Order",
            "-c",
            SMALL_ORDER,
            "-e",
            r#"["SUBMIT", {"advanceMs": 900000}, "PAY"]"#,
        ],
    );
    assert_eq!(finished.code, Some(1));
    assert!(
        finished.stdout.contains("--PAYMENT_TIMEOUT--> Cancelled")
            && finished.stdout.contains("final states:"),
        "{}",
        finished.stdout
    );
    assert!(
        finished.stderr.contains("item 3 `\"PAY\"` failed: instance Order#1 is not live"),
        "{}",
        finished.stderr
    );
    let nobody = xc(
        &dir,
        &[
            "run",
            "components/shop.yaml",
            "-m",
            "Order",
            "-c",
            SMALL_ORDER,
            "-e",
            r#"[{"machine": "Shipment", "type": "DISPATCH"}]"#,
        ],
    );
    assert_eq!(nobody.code, Some(1));
    assert!(
        nobody.stderr.contains("no live instance of machine Shipment (live: Order#1)"),
        "{}",
        nobody.stderr
    );
}

#[test]
fn ignored_events_are_traced_but_do_not_fail_a_run() {
    let (_temp, dir) = project();
    let run = xc(
        &dir,
        &["run", "components/shop.yaml", "-m", "Order", "-c", SMALL_ORDER, "-e", r#"["APPROVE"]"#],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout
            .contains("Order#1 ignored APPROVE: no transition from state Draft on event APPROVE"),
        "{}",
        run.stdout
    );
}

#[test]
fn simulate_prints_the_path_and_the_effects_it_did_not_carry_out() {
    let (_temp, dir) = project();
    let walk = xc(
        &dir,
        &[
            "simulate",
            "components/shop.yaml",
            "-m",
            "Order",
            "-c",
            SMALL_ORDER,
            "-e",
            r#"["SUBMIT", "PAY"]"#,
        ],
    );
    assert_eq!(walk.code, Some(0), "{}", walk.stderr);
    assert!(walk.stdout.contains("path: [Draft, AwaitingPayment, Shipping]"), "{}", walk.stdout);
    assert!(
        walk.stdout.contains(
            "effect: create child Shipment with {\"address\":\"1 Main Street\",\"orderId\":\"A-1\"}"
        ),
        "{}",
        walk.stdout
    );

    let timed = xc(
        &dir,
        &[
            "simulate",
            "components/shop.yaml",
            "-m",
            "Order",
            "-c",
            SMALL_ORDER,
            "-e",
            r#"["SUBMIT", {"advanceMs": 900000}, "PAY"]"#,
        ],
    );
    assert_eq!(timed.code, Some(0), "the walk stops at the error state: {}", timed.stderr);
    assert!(
        timed.stdout.contains("+15min  AwaitingPayment --PAYMENT_TIMEOUT--> Cancelled [timeout]"),
        "{}",
        timed.stdout
    );
    assert!(
        timed.stdout.contains("stopped in Cancelled (error): 1 step(s) not taken"),
        "{}",
        timed.stdout
    );
}

#[test]
fn simulate_fails_when_an_event_has_no_transition() {
    let (_temp, dir) = project();
    let walk = xc(
        &dir,
        &[
            "simulate",
            "components/shop.yaml",
            "-m",
            "Order",
            "-c",
            SMALL_ORDER,
            "-e",
            r#"["SUBMIT", "SHIP"]"#,
        ],
    );
    assert_eq!(walk.code, Some(1));
    assert!(
        walk.stderr.contains("No transition from AwaitingPayment for event SHIP"),
        "{}",
        walk.stderr
    );
    assert!(walk.stdout.contains("path: [Draft, AwaitingPayment]"), "{}", walk.stdout);

    let guarded = xc(
        &dir,
        &[
            "simulate",
            "components/shop.yaml",
            "-m",
            "Order",
            "-e",
            r#"["SUBMIT"]"#,
            "--output",
            "json",
        ],
    );
    assert_eq!(guarded.code, Some(1), "no amount: neither guard can be evaluated");
    let report: Value = serde_json::from_str(guarded.stdout.trim())
        .unwrap_or_else(|error| panic!("{}: {error}", guarded.stdout));
    assert_eq!(report["success"], false);
    assert_eq!(report["path"], serde_json::json!(["Draft"]));
    assert!(
        report["error"]
            .as_str()
            .is_some_and(|error| error.starts_with("No transition from Draft for event SUBMIT: ")),
        "{report}"
    );

    let other = xc(
        &dir,
        &[
            "simulate",
            "components/shop.yaml",
            "-m",
            "Order",
            "-e",
            r#"[{"machine": "Shipment", "type": "DISPATCH"}]"#,
        ],
    );
    assert_eq!(other.code, Some(2));
    assert!(other.stderr.contains("simulate follows a single instance"), "{}", other.stderr);
}

#[test]
fn help_documents_the_event_format() {
    let help = xc(Path::new("."), &["run", "--help"]);
    assert_eq!(help.code, Some(0));
    for needle in ["advanceMs", "\"machine\": \"Payment\"", "--advance-ms", "Exit status"] {
        assert!(help.stdout.contains(needle), "run --help lacks {needle}:\n{}", help.stdout);
    }
    let help = xc(Path::new("."), &["simulate", "--help"]);
    assert!(help.stdout.contains("No transition from X for event Y"), "{}", help.stdout);
}

// The original's command forms (its README and QUICKSTART): each works as typed, or fails
// saying what to type instead.

#[test]
fn run_and_simulate_accept_the_machine_as_a_positional_argument_as_the_original() {
    let (_temp, dir) = project();
    let events = r#"["SUBMIT", "PAY"]"#;
    let named =
        xc(&dir, &["run", "components/shop.yaml", "-m", "Order", "-c", SMALL_ORDER, "-e", events]);
    let positional =
        xc(&dir, &["run", "components/shop.yaml", "Order", "-c", SMALL_ORDER, "--events", events]);
    assert_eq!(named.code, Some(0), "{}", named.stderr);
    assert_eq!(positional.code, Some(0), "{}", positional.stderr);
    assert!(positional.stdout.contains("Shipping"), "{}", positional.stdout);
    assert_eq!(positional.stdout, named.stdout, "the two forms run the same thing");

    let walk =
        xc(&dir, &["simulate", "components/shop.yaml", "Order", "-c", SMALL_ORDER, "-e", events]);
    assert_eq!(walk.code, Some(0), "{}", walk.stderr);
    assert!(walk.stdout.contains("path: [Draft, AwaitingPayment, Shipping]"), "{}", walk.stdout);
}

#[test]
fn a_missing_machine_is_refused_with_both_forms_named() {
    let (_temp, dir) = project();
    for command in ["run", "simulate"] {
        let missing = xc(&dir, &[command, "components/shop.yaml", "-e", r#"["SUBMIT"]"#]);
        assert_eq!(missing.code, Some(2), "{command}: {}", missing.stderr);
        assert!(
            missing.stderr.contains("no machine given")
                && missing.stderr.contains("--machine NAME")
                && missing.stderr.contains("`FILE MACHINE`"),
            "{command}: {}",
            missing.stderr
        );
    }
    // A second file that does not exist is a file, not a machine name.
    let typo = xc(&dir, &["run", "components/shop.yaml", "components/other.yaml"]);
    assert_eq!(typo.code, Some(2), "{}", typo.stderr);
    assert!(typo.stderr.contains("no machine given"), "{}", typo.stderr);
}

#[test]
fn events_with_the_originals_timestamp_key_run_and_the_clock_dates_them() {
    let (_temp, dir) = project();
    let plain = xc(
        &dir,
        &[
            "run",
            "components/shop.yaml",
            "Order",
            "-c",
            SMALL_ORDER,
            "-e",
            r#"[{"type": "SUBMIT"}]"#,
        ],
    );
    let stamped = xc(
        &dir,
        &[
            "run",
            "components/shop.yaml",
            "Order",
            "-c",
            SMALL_ORDER,
            "-e",
            r#"[{"type": "SUBMIT", "payload": {}, "timestamp": 1700000000000}]"#,
        ],
    );
    assert_eq!(stamped.code, Some(0), "{}", stamped.stderr);
    assert_eq!(stamped.stdout, plain.stdout);
    let iso = xc(
        &dir,
        &[
            "simulate",
            "components/shop.yaml",
            "Order",
            "-c",
            SMALL_ORDER,
            "-e",
            r#"[{"type": "SUBMIT", "timestamp": "2024-05-01T10:00:00Z"}]"#,
        ],
    );
    assert_eq!(iso.code, Some(0), "{}", iso.stderr);
    let bad = xc(
        &dir,
        &[
            "run",
            "components/shop.yaml",
            "Order",
            "-e",
            r#"[{"type": "SUBMIT", "timestamp": [1]}]"#,
        ],
    );
    assert_eq!(bad.code, Some(2));
    assert!(bad.stderr.contains("\"timestamp\" must be a number"), "{}", bad.stderr);
}

#[test]
fn load_prints_the_component_and_its_machines_as_the_original() {
    let (_temp, dir) = project();
    let loaded = xc(&dir, &["load", "components/shop.yaml"]);
    assert_eq!(loaded.code, Some(0), "{}", loaded.stderr);
    let mut lines = loaded.stdout.lines();
    assert_eq!(lines.next(), Some("Component: Shop (version 0.1.0)"), "{}", loaded.stdout);
    let machines: Vec<&str> = lines.collect();
    assert!(
        machines
            == ["  Order: 6 states, 7 transitions (entry)", "  Shipment: 3 states, 2 transitions"],
        "{}",
        loaded.stdout
    );

    std::fs::write(dir.join("broken.yaml"), "name: X\nstateMachines: []\n").expect("write");
    let broken = xc(&dir, &["load", "broken.yaml"]);
    assert_eq!(broken.code, Some(2));
    assert!(broken.stderr.contains("broken.yaml:"), "diagnostics name the file: {}", broken.stderr);
}

#[test]
fn init_takes_the_originals_domain_option() {
    let temp = tempfile::tempdir().expect("temp dir");
    let made = xc(temp.path(), &["init", "bank", "-d", "fintech"]);
    assert_eq!(made.code, Some(0), "{}", made.stderr);
    let readme = std::fs::read_to_string(temp.path().join("bank/README.md")).unwrap_or_default();
    assert!(readme.contains("\nDomain: fintech.\n"), "{readme}");
    let valid = xc(&temp.path().join("bank"), &["validate", "components/bank.yaml"]);
    assert_eq!(valid.code, Some(0), "{}", valid.stderr);
    // Without -d the README has no domain line.
    let plain = xc(temp.path(), &["init", "shop", "--domain", " "]);
    assert_eq!(plain.code, Some(0));
    let readme = std::fs::read_to_string(temp.path().join("shop/README.md")).unwrap_or_default();
    assert!(!readme.contains("Domain:"), "{readme}");
    let help = xc(temp.path(), &["init", "--help"]);
    assert!(help.stdout.contains("It is not a folder"), "{}", help.stdout);
}

#[test]
fn serve_refuses_an_invalid_handlers_file_naming_the_line_and_the_field() {
    let temp = tempfile::tempdir().expect("temp dir");
    let component = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/order-payment/payment.yaml")
        .canonicalize()
        .expect("example component");
    let component = component.to_str().expect("utf-8 path");
    let handlers = temp.path().join("handlers.yaml");
    std::fs::write(
        &handlers,
        "handlers:\n  checkPaymentMethod:\n    url: http://127.0.0.1:1/\n    retrys: 3\n",
    )
    .expect("write handlers");
    let handlers = handlers.to_str().expect("utf-8 path");
    let args = ["serve", "--store", "memory", "--port", "0", "--handlers", handlers, component];
    let refused = xc(temp.path(), &args);
    assert_ne!(refused.code, Some(0), "{}", refused.stdout);
    assert!(refused.stderr.contains("line 4 column 5"), "{}", refused.stderr);
    assert!(refused.stderr.contains("unknown field `retrys`"), "{}", refused.stderr);

    let unset = temp.path().join("unset.yaml");
    std::fs::write(
        &unset,
        "handlers:\n  m:\n    url: http://127.0.0.1:1/\n    secret: ${XC_TEST_UNSET_SECRET}\n",
    )
    .expect("write handlers");
    let unset = unset.to_str().expect("utf-8 path");
    let args = ["serve", "--store", "memory", "--port", "0", "--handlers", unset, component];
    let refused = xc(temp.path(), &args);
    assert_ne!(refused.code, Some(0), "{}", refused.stdout);
    assert!(
        refused
            .stderr
            .contains("handlers.m: secret: environment variable XC_TEST_UNSET_SECRET is not set"),
        "{}",
        refused.stderr
    );
}
