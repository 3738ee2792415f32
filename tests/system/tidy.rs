//! Rules the codebase keeps, checked by reading it.

use std::path::Path;

/// The SFU core is sans-IO: no runtime, no sockets, no clock, no sleeping, no files.
#[test]
fn the_sfu_core_does_no_io_and_reads_no_clock() {
    let core = Path::new(env!("CARGO_MANIFEST_DIR")).join("../node/src/sfu");
    let forbidden = [
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
    let mut checked = 0;
    for entry in std::fs::read_dir(&core).expect("the core's directory exists") {
        let path = entry.expect("readable").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable");
        // Unit tests may use the real clock to make instants; the core's code may not.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for word in forbidden {
            assert!(!code.contains(word), "{} uses {word}", path.display());
        }
        checked += 1;
    }
    assert!(checked >= 4, "expected the core's modules, found {checked}");
}
