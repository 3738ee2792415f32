//! Builds the plugins that ship inside the node (polls, Q&A) as wasm32-wasip2 components, so
//! `cargo run -p multistream-node` needs no separate step. They are compiled by a nested cargo
//! into a target directory of their own under `OUT_DIR` (sharing the outer one would wait on its
//! lock forever) and embedded with `include_bytes!` by `src/plugins/builtin.rs`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Crate directory and component file name of each built-in plugin.
const BUILTIN: &[(&str, &str)] = &[
    ("multistream-plugin-polls", "multistream_plugin_polls.wasm"),
    ("multistream-plugin-qa", "multistream_plugin_qa.wasm"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("the node crate sits in the workspace")
        .to_owned();
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    for watched in [
        "plugins/sdk",
        "plugins/polls",
        "plugins/qa",
        "wit",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let target_dir = out.join("plugins-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--locked",
            "--target",
            "wasm32-wasip2",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    for (package, _) in BUILTIN {
        command.args(["-p", package]);
    }
    // The outer build's flags are for the host, not for wasm.
    for variable in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        command.env_remove(variable);
    }
    let status = command
        .status()
        .unwrap_or_else(|error| panic!("cannot run cargo to build the built-in plugins: {error}"));
    if !status.success() {
        panic!(
            "building the built-in plugins for wasm32-wasip2 failed (see above). If the target is \
             missing: rustup target add wasm32-wasip2"
        );
    }
    let built = target_dir.join("wasm32-wasip2").join("release");
    for (_, file) in BUILTIN {
        copy(&built.join(file), &out.join(file));
    }
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap_or_else(|error| {
        panic!(
            "cannot copy {} to {}: {error}",
            from.display(),
            to.display()
        )
    });
}
