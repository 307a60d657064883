//! Rebuilds the crate when the embedded dashboard changes (files added or removed included).

fn main() {
    println!("cargo:rerun-if-changed=dashboard");
    println!("cargo:rerun-if-changed=build.rs");
}
