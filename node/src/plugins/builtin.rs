//! The plugins compiled into the node by `build.rs`: offered in every class unless the
//! configuration says `builtin_plugins = false`. A signed package of the same name in the
//! plugin directory replaces one.

/// Name and component bytes of each built-in plugin.
pub const BUILTIN: &[(&str, &[u8])] = &[
    (
        "polls",
        include_bytes!(concat!(env!("OUT_DIR"), "/multistream_plugin_polls.wasm")),
    ),
    (
        "qa",
        include_bytes!(concat!(env!("OUT_DIR"), "/multistream_plugin_qa.wasm")),
    ),
];
