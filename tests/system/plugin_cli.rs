//! Plugin packages from the node's command line: a signing key, a signed package of the polls
//! component that opens with that key only, and clear refusals.

use std::process::Command;

use multistream_plugin_host::package::{self, PackageError};
use multistream_tests::node_process::{fresh_data_dir, node_binary};

fn node(args: &[&str]) -> std::process::Output {
    Command::new(node_binary())
        .args(args)
        .output()
        .expect("the node binary runs")
}

#[test]
fn plugins_are_signed_into_packages_only_a_trusted_key_opens() {
    let dir = fresh_data_dir("plugin-cli");
    std::fs::create_dir_all(&dir).expect("a directory");
    let key = dir.join("signing.key");
    let key_arg = key.to_string_lossy().to_string();
    let made = node(&["plugin-key", "--out", &key_arg]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let public = String::from_utf8_lossy(&made.stdout).trim().to_owned();
    assert_eq!(public.len(), 64, "a hex Ed25519 public key: {public}");
    let again = node(&["plugin-key", "--out", &key_arg]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"));

    // The polls component, built by the test command beside the node binary.
    let target = node_binary()
        .parent()
        .and_then(|p| p.parent())
        .expect("the node binary is in a cargo target directory")
        .to_path_buf();
    let wasm = target.join("wasm32-wasip2/release/multistream_plugin_polls.wasm");
    assert!(
        wasm.exists(),
        "{} is missing: build it with `cargo build --release --target wasm32-wasip2 -p multistream-plugin-polls` (tests/run.sh does)",
        wasm.display()
    );
    let out = dir.to_string_lossy().to_string();
    let signed = node(&[
        "plugin-sign",
        "--key",
        &key_arg,
        "--out",
        &out,
        &wasm.to_string_lossy(),
    ]);
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    let path = String::from_utf8_lossy(&signed.stdout).trim().to_owned();
    assert!(path.ends_with("polls-0.1.0.msplugin"), "{path}");
    let bytes = std::fs::read(&path).expect("the package");
    let opened = package::open(&bytes, &[public.clone()]).expect("opens with the signer's key");
    assert_eq!(opened.name, "polls");
    assert_eq!(opened.wasm, std::fs::read(&wasm).expect("the component"));
    assert!(matches!(
        package::open(&bytes, &["00".repeat(32)]),
        Err(PackageError::UntrustedKey(_))
    ));

    // Something that is not a component is refused, and nothing is written.
    let junk = dir.join("junk.wasm");
    std::fs::write(&junk, b"not a component").expect("written");
    let refused = node(&[
        "plugin-sign",
        "--key",
        &key_arg,
        "--out",
        &out,
        &junk.to_string_lossy(),
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is not a multistream plugin component"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let _ = std::fs::remove_dir_all(dir);
}
