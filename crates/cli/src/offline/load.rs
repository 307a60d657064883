//! Loading the component files of `run`, `simulate`, `load` and `serve`: parse, validate,
//! compile, and find the machine a command starts from. Any error diagnostic stops everything
//! before a runtime starts; warnings and notes are handed back to be shown.

use std::borrow::Borrow;
use std::path::{Path, PathBuf};
use xcomponent_core::definition::Definition;
use xcomponent_core::diagnostic::{Diagnostic, Position, Severity};
use xcomponent_core::load::load_component_file;
use xcomponent_core::validate::{ValidateOptions, validate};

/// Diagnostic code used when a file passes validation but the compiler still refuses it.
const COMPILE_CODE: &str = "XC0000";

/// Components ready to run.
#[derive(Debug)]
pub struct Loaded {
    /// One definition per file, in command-line order.
    pub definitions: Vec<Definition>,
    /// Warnings and notes found on the way (no error).
    pub warnings: Vec<Diagnostic>,
}

/// Why the files cannot be run.
#[derive(Debug)]
pub enum LoadError {
    /// At least one file has an error; every diagnostic found, errors first.
    Invalid(Vec<Diagnostic>),
    /// The files are valid but the command cannot start from them (unknown machine...).
    Usage(String),
}

/// Loads, validates and compiles every file; component names must be unique.
pub fn load_definitions(files: &[PathBuf]) -> Result<Loaded, LoadError> {
    let mut definitions = Vec::with_capacity(files.len());
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for file in files {
        match load_one(file) {
            Ok((definition, mut notes)) => {
                warnings.append(&mut notes);
                definitions.push(definition);
            }
            Err(mut diagnostics) => errors.append(&mut diagnostics),
        }
    }
    if !errors.is_empty() {
        errors.extend(warnings);
        return Err(LoadError::Invalid(errors));
    }
    for (index, definition) in definitions.iter().enumerate() {
        if let Some(earlier) =
            definitions[..index].iter().position(|other| other.name == definition.name)
        {
            return Err(LoadError::Usage(format!(
                "component {} is defined twice ({} and {}); one runtime hosts each component once",
                definition.name,
                files[earlier].display(),
                files[index].display()
            )));
        }
    }
    Ok(Loaded { definitions, warnings })
}

fn load_one(file: &Path) -> Result<(Definition, Vec<Diagnostic>), Vec<Diagnostic>> {
    let loaded = load_component_file(file)?;
    let diagnostics = validate(&loaded, &ValidateOptions::default());
    if diagnostics.iter().any(Diagnostic::is_error) {
        return Err(diagnostics);
    }
    match Definition::compile(loaded.component) {
        // No error is left in `diagnostics`: they are warnings and notes.
        Ok(definition) => Ok((definition, diagnostics)),
        Err(problems) => Err(problems
            .into_iter()
            .map(|problem| {
                Diagnostic::new(Severity::Error, COMPILE_CODE, problem.to_string())
                    .at(&loaded.file, Position::default(), "")
                    .with_hint(
                        "this file passed validation but cannot be compiled; please report it",
                    )
            })
            .collect()),
    }
}

/// Finds the component hosting `machine` (in `component`, when given).
pub fn find_machine<'d, D: Borrow<Definition>>(
    definitions: &'d [D],
    machine: &str,
    component: Option<&str>,
) -> Result<&'d Definition, String> {
    let definitions: Vec<&'d Definition> = definitions.iter().map(Borrow::borrow).collect();
    let hosts: Vec<&Definition> = definitions
        .iter()
        .copied()
        .filter(|definition| component.is_none_or(|name| &*definition.name == name))
        .filter(|definition| definition.machine_index(machine).is_some())
        .collect();
    match (hosts.as_slice(), component) {
        ([one], _) => Ok(one),
        ([], Some(name)) if !definitions.iter().any(|definition| &*definition.name == name) => {
            Err(format!(
                "no component named {name} (loaded: {})",
                names(definitions.iter().map(|definition| &*definition.name))
            ))
        }
        ([], _) => {
            let known: Vec<String> = definitions
                .iter()
                .filter(|definition| component.is_none_or(|name| &*definition.name == name))
                .flat_map(|definition| {
                    definition.machines.iter().map(|machine| machine.name.to_string())
                })
                .collect();
            Err(format!(
                "no machine named {machine} (machines: {})",
                names(known.iter().map(String::as_str))
            ))
        }
        (many, _) => Err(format!(
            "machine {machine} exists in several components ({}); choose one with --component",
            names(many.iter().map(|definition| &*definition.name))
        )),
    }
}

fn names<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let list: Vec<&str> = items.collect();
    if list.is_empty() { "none".to_owned() } else { list.join(", ") }
}

/// Prints diagnostics to stderr, one block each.
pub fn print_diagnostics(diagnostics: &[Diagnostic]) {
    for diagnostic in diagnostics {
        eprintln!("{diagnostic}");
    }
}
