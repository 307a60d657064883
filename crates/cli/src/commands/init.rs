//! `xcomponent-ai init NAME`: creates a project folder with a small but complete component
//! (`components/NAME.yaml`: guards, a timeout, a child machine that notifies its parent), a
//! README saying how to validate, simulate, run and serve it, and an `events.json` for `run`.
//! An existing folder is never touched.

use anyhow::{Context as _, Result, bail};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const COMPONENT_TEMPLATE: &str = include_str!("init/component.yaml");
const README_TEMPLATE: &str = include_str!("init/README.md");
const EVENTS_TEMPLATE: &str = include_str!("init/events.json");

/// Create a new project folder with an example component, a README and an events file.
#[derive(Debug, Args)]
#[command(after_help = "\
Creates NAME/components/NAME.yaml, NAME/README.md and NAME/events.json. NAME may be a path
(the last part names the project); it must start with a letter and use only letters, digits,
`-` and `_`. The component is named after it in PascalCase (my-shop -> MyShop).

Refuses to write into a folder that already exists.

-d/--domain is the original's option (a business domain such as fintech): it is written into the
README; the example component is the same for every domain. It is not a folder: to create the
project elsewhere, give a path as NAME (init projects/shop).

Then:
  cd NAME && xcomponent-ai validate components/NAME.yaml")]
pub struct InitArgs {
    /// Name (or path) of the project folder to create.
    #[arg(value_name = "NAME")]
    name: PathBuf,

    /// Business domain of the project (the original's option; written into the README).
    #[arg(long, short = 'd', value_name = "DOMAIN")]
    domain: Option<String>,
}

/// Runs the command.
pub fn run(args: InitArgs) -> Result<ExitCode> {
    let folder = args.name.as_path();
    let name = project_name(folder)?;
    let component = component_name(&name);
    if folder.exists() {
        bail!(
            "{} already exists; init only creates new folders (choose another name or remove it)",
            folder.display()
        );
    }
    if let Some(parent) = folder.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::create_dir(folder).with_context(|| format!("cannot create {}", folder.display()))?;
    let domain = match args.domain.as_deref().map(str::trim) {
        Some(domain) if !domain.is_empty() => format!("\nDomain: {domain}.\n"),
        _ => String::new(),
    };
    let fill = |template: &str| {
        template
            .replace("{{NAME}}", &name)
            .replace("{{COMPONENT}}", &component)
            .replace("{{DOMAIN}}\n", &domain)
    };
    let files = [
        (folder.join("components").join(format!("{name}.yaml")), fill(COMPONENT_TEMPLATE)),
        (folder.join("README.md"), fill(README_TEMPLATE)),
        (folder.join("events.json"), fill(EVENTS_TEMPLATE)),
    ];
    for (path, text) in &files {
        write_new(path, text)?;
    }
    println!("Created {}:", folder.display());
    for (path, _) in &files {
        println!("  {}", path.strip_prefix(folder).unwrap_or(path).display());
    }
    println!(
        "Next: cd {} && xcomponent-ai validate components/{name}.yaml (README.md has more)",
        folder.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The last part of the path, checked.
fn project_name(folder: &Path) -> Result<String> {
    let Some(name) = folder.file_name().and_then(|name| name.to_str()) else {
        bail!("{} does not end with a folder name", folder.display());
    };
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|first| first.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        bail!(
            "project name {name:?} must start with a letter and use only letters, digits, `-` and `_`"
        );
    }
    Ok(name.to_owned())
}

/// `my-shop` → `MyShop`, `orders` → `Orders`.
fn component_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn write_new(path: &Path, text: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_names_are_pascal_case() {
        assert_eq!(component_name("my-shop"), "MyShop");
        assert_eq!(component_name("orders"), "Orders");
        assert_eq!(component_name("a_b-c2"), "ABC2");
    }

    #[test]
    fn project_names_are_checked() {
        assert!(project_name(Path::new("dir/my-shop")).is_ok());
        assert!(project_name(Path::new("1shop")).is_err());
        assert!(project_name(Path::new("my shop")).is_err());
        assert!(project_name(Path::new("..")).is_err());
    }
}
