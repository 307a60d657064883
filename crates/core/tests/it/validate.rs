//! Loading and validation: every reference example must validate without errors, and each file
//! under `tests/data/invalid/` (named after the code it demonstrates; a first line `# strict`
//! validates it strictly) must produce that code. Rendered diagnostics are snapshot-tested, so
//! positions and wording are pinned.

use std::path::{Path, PathBuf};
use xcomponent_core::diagnostic::{Diagnostic, codes, has_errors};
use xcomponent_core::load::{load_component_file, parse_component};
use xcomponent_core::validate::{ValidateOptions, validate};

fn render(diagnostics: &[Diagnostic]) -> String {
    let mut text = diagnostics.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    text.push('\n');
    text
}

/// Loads and validates `text` as the file `name`, as `xcomponent-ai validate` does.
fn check(text: &str, name: &str, strict: bool) -> Vec<Diagnostic> {
    match parse_component(text, name) {
        Ok(loaded) => validate(&loaded, &ValidateOptions { strict }),
        Err(diagnostics) => diagnostics,
    }
}

fn yaml_files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path
                .extension()
                .is_some_and(|extension| extension == "yaml" || extension == "yml")
            {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn reference_examples_dir() -> PathBuf {
    // The repository root is two levels above this crate; the reference sits next to it.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/examples")
}

#[test]
fn every_reference_example_loads_and_validates_without_errors() {
    let dir = reference_examples_dir();
    if !dir.is_dir() {
        let required = std::env::var("XC_REQUIRE_REFERENCE").is_ok_and(|value| {
            xcomponent_core::flag::parse(&value)
                .unwrap_or_else(|error| panic!("XC_REQUIRE_REFERENCE: {error}"))
        });
        eprintln!(
            "\n!!!! REFERENCE EXAMPLES ABSENT: {} does not exist; the examples were NOT checked !!!!\n",
            dir.display()
        );
        assert!(
            !required,
            "XC_REQUIRE_REFERENCE is on but the reference examples folder {} is absent",
            dir.display()
        );
        return;
    }
    let files = yaml_files_under(&dir);
    assert!(!files.is_empty(), "no YAML file under {}", dir.display());
    let mut report = String::new();
    let mut failures = Vec::new();
    for file in &files {
        let name = file.strip_prefix(&dir).unwrap_or(file).display().to_string();
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(error) => {
                failures.push(format!("{name}: cannot read: {error}"));
                continue;
            }
        };
        let diagnostics = check(&text, &name, false);
        if has_errors(&diagnostics) {
            failures.push(render(&diagnostics));
        }
        report.push_str(&format!(
            "== {name}\n{}",
            if diagnostics.is_empty() { "\n".to_owned() } else { render(&diagnostics) }
        ));
    }
    assert!(failures.is_empty(), "reference examples with errors:\n{}", failures.join("\n"));
    // Pins the warnings and notes the examples produce (each with its reason).
    insta::assert_snapshot!("reference_examples", report);
}

#[test]
fn invalid_cases() {
    insta::glob!("../data/invalid", "*.yaml", |path| {
        let name =
            path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|error| panic!("cannot read {name}: {error}"));
        let strict = text.starts_with("# strict");
        let diagnostics = check(&text, &name, strict);
        let expected_code = name.get(..6).unwrap_or_default();
        assert!(
            diagnostics.iter().any(|diagnostic| diagnostic.code == expected_code),
            "{name} should produce {expected_code}, got:\n{}",
            render(&diagnostics)
        );
        insta::assert_snapshot!(render(&diagnostics));
    });
}

#[test]
fn every_code_has_an_invalid_case() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/invalid");
    let cases: Vec<String> = yaml_files_under(&dir)
        .iter()
        .filter_map(|path| path.file_name().map(|name| name.to_string_lossy().into_owned()))
        .collect();
    for info in codes::ALL {
        // XC0001 (unreadable file) cannot be a file's content: see `unreadable_file`.
        if info.code == codes::FILE_UNREADABLE {
            continue;
        }
        assert!(
            cases.iter().any(|case| case.starts_with(info.code)),
            "no case under tests/data/invalid/ for {}",
            info.code
        );
    }
}

#[test]
fn unreadable_file() {
    let diagnostics = match load_component_file(Path::new("tests/data/no-such-file.yaml")) {
        Ok(_) => panic!("a missing file must not load"),
        Err(diagnostics) => diagnostics,
    };
    insta::assert_snapshot!(render(&diagnostics), @r"
    tests/data/no-such-file.yaml: error[XC0001]: cannot read the component file: No such file or directory (os error 2)
      = hint: check the path and the file's permissions; component files are UTF-8 YAML
    ");
}
