//! Rules the codebase keeps, checked by reading it.

use std::path::Path;

/// What a sans-IO core must not touch: no runtime, no sockets, no clock, no sleeping, no files.
const FORBIDDEN_IN_CORES: [&str; 9] = [
    "tokio",
    "UdpSocket",
    "TcpStream",
    "TcpListener",
    "Instant::now",
    "SystemTime",
    "thread::sleep",
    "std::fs",
    "std::thread",
];

/// Checks every module of the core in `dir` (relative to the node crate); returns how many.
fn check_core(dir: &str) -> usize {
    let core = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../node/src")
        .join(dir);
    let mut checked = 0;
    for entry in std::fs::read_dir(&core).expect("the core's directory exists") {
        let path = entry.expect("readable").path();
        // A core's unit tests (`tests.rs`) may use the real clock to make instants.
        if path.extension().is_none_or(|e| e != "rs") || path.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        // Unit tests may use the real clock to make instants; the core's code may not.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for word in FORBIDDEN_IN_CORES {
            assert!(!code.contains(word), "{} uses {word}", path.display());
        }
        checked += 1;
    }
    checked
}

#[test]
fn the_sfu_core_does_no_io_and_reads_no_clock() {
    let checked = check_core("sfu");
    assert!(
        checked >= 4,
        "expected the SFU core's modules, found {checked}"
    );
}

#[test]
fn the_relay_core_does_no_io_and_reads_no_clock() {
    let checked = check_core("relay");
    assert!(
        checked >= 2,
        "expected the relay core and its wire format, found {checked}"
    );
}

#[test]
fn the_session_log_core_does_no_io_and_reads_no_clock() {
    let checked = check_core("log");
    assert!(
        checked >= 2,
        "expected the log core's modules, found {checked}"
    );
}
