//! Prometheus text exposition of the node's counters and gauges (`GET /metrics`).

use std::collections::BTreeMap;
use std::fmt::Write;

use std::sync::atomic::Ordering;

use crate::log::LogCounters;
use crate::media::MediaSnapshot;
use crate::peer::PeerCounters;

/// Renders every metric. Label values are fixed strings chosen by the node, never user input.
pub fn render(
    snapshot: &MediaSnapshot,
    classroom_connections: usize,
    refusals: &BTreeMap<(&'static str, &'static str), u64>,
    log: Option<&LogCounters>,
    peers: Option<&PeerCounters>,
    links: &[crate::peer::LinkView],
    plugins: Option<&crate::plugins::PluginsStatus>,
) -> String {
    let mut out = String::with_capacity(4096);
    let c = &snapshot.counters;
    let g = &snapshot.gauges;
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
    };
    family(
        "multistream_peers",
        "gauge",
        "Media connections by kind.",
        &[
            ("kind=\"publisher\"", g.publishers as u64),
            ("kind=\"subscriber\"", g.subscribers as u64),
        ],
    );
    family(
        "multistream_peers_connecting",
        "gauge",
        "Media connections still in ICE/DTLS setup.",
        &[("", g.connecting as u64)],
    );
    family(
        "multistream_sessions",
        "gauge",
        "Sessions with at least one media connection.",
        &[("", g.sessions as u64)],
    );
    family(
        "multistream_tracks",
        "gauge",
        "Media tracks: published into the node, and subscriber lines bound to a publisher.",
        &[
            ("direction=\"published\"", g.tracks_published as u64),
            ("direction=\"subscribed\"", g.tracks_subscribed as u64),
        ],
    );
    family(
        "multistream_classroom_connections",
        "gauge",
        "Open classroom WebSocket connections.",
        &[("", classroom_connections as u64)],
    );
    family(
        "multistream_datagrams_total",
        "counter",
        "UDP datagrams on the media socket.",
        &[
            ("direction=\"in\"", c.datagrams_in),
            ("direction=\"out\"", c.datagrams_out),
        ],
    );
    family(
        "multistream_bytes_total",
        "counter",
        "UDP bytes on the media socket.",
        &[
            ("direction=\"in\"", c.bytes_in),
            ("direction=\"out\"", c.bytes_out),
        ],
    );
    family(
        "multistream_rtp_packets_total",
        "counter",
        "RTP packets received from publishers and forwarded to subscribers.",
        &[
            ("direction=\"in\"", c.rtp_in),
            ("direction=\"forwarded\"", c.rtp_forwarded),
        ],
    );
    family(
        "multistream_rtp_forwarded_bytes_total",
        "counter",
        "RTP payload bytes forwarded to subscribers.",
        &[("", c.rtp_forwarded_bytes)],
    );
    family(
        "multistream_keyframe_requests_total",
        "counter",
        "Keyframe requests to publishers: sent, or coalesced into one already sent.",
        &[
            ("outcome=\"sent\"", c.keyframe_requests_sent),
            ("outcome=\"coalesced\"", c.keyframe_requests_coalesced),
        ],
    );
    family(
        "multistream_dropped_packets_total",
        "counter",
        "Packets dropped, by reason.",
        &[
            ("reason=\"malformed\"", c.datagrams_malformed),
            ("reason=\"unrouted\"", c.datagrams_unrouted),
            ("reason=\"oversized\"", snapshot.socket.datagrams_oversized),
            ("reason=\"transmit_queue_full\"", c.transmit_dropped),
            ("reason=\"no_common_codec\"", c.rtp_unforwardable),
            ("reason=\"send_error\"", snapshot.socket.send_errors),
        ],
    );
    family(
        "multistream_udp_send_calls_total",
        "counter",
        "sendmsg calls on the media socket; fewer than datagrams out when runs to one peer are sent as one segmented (GSO) write.",
        &[("", snapshot.socket.send_calls)],
    );
    family(
        "multistream_layer_switches_total",
        "counter",
        "Simulcast layer switches for subscribers.",
        &[("", c.layer_switches)],
    );
    family(
        "multistream_peer_wakeups_total",
        "counter",
        "Timer wake-ups of single peers (RTCP, bandwidth estimation, retransmission).",
        &[("", c.peer_wakeups)],
    );
    family(
        "multistream_peer_errors_total",
        "counter",
        "Errors str0m reported for single peers.",
        &[("", c.peer_errors)],
    );
    let removed: Vec<(String, u64)> = c
        .peers_removed
        .iter()
        .map(|(reason, n)| (format!("reason=\"{reason}\""), *n))
        .collect();
    let removed: Vec<(&str, u64)> = removed.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    family(
        "multistream_peers_removed_total",
        "counter",
        "Media connections that ended, by reason.",
        &removed,
    );
    let refused: Vec<(String, u64)> = refusals
        .iter()
        .map(|((endpoint, reason), n)| (format!("endpoint=\"{endpoint}\",reason=\"{reason}\""), *n))
        .collect();
    let refused: Vec<(&str, u64)> = refused.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    family(
        "multistream_http_refusals_total",
        "counter",
        "Refused HTTP and WebSocket requests.",
        &refused,
    );
    if let Some(log) = log {
        family(
            "multistream_log_events_total",
            "counter",
            "Session-log events: appended here as a home edge, or followed from another edge.",
            &[
                ("origin=\"appended\"", log.events_appended),
                ("origin=\"followed\"", log.events_followed),
            ],
        );
        family(
            "multistream_log_requests_total",
            "counter",
            "Class requests refused (by the class rules or the rate limits), or answered from an earlier application of the same key.",
            &[
                ("outcome=\"refused\"", log.requests_refused),
                ("outcome=\"deduplicated\"", log.requests_deduplicated),
                ("outcome=\"rate_limited\"", log.requests_rate_limited),
            ],
        );
        family(
            "multistream_log_frames_total",
            "counter",
            "Session-log frames: forwarded requests sent, frames ignored (stale, gap, not for us), stale terms refused, divergent entries dropped.",
            &[
                ("kind=\"forward_sent\"", log.forwards_sent),
                ("kind=\"ignored\"", log.frames_ignored),
                ("kind=\"stale_term\"", log.stale_terms_refused),
                ("kind=\"divergent_dropped\"", log.divergent_entries_dropped),
            ],
        );
        family(
            "multistream_log_store_failures_total",
            "counter",
            "Session-log writes the store refused (the session then refuses changes).",
            &[("", log.store_failures)],
        );
    }
    if let Some(peers) = peers {
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        family(
            "multistream_peer_frames_total",
            "counter",
            "Frames on the peer plane (QUIC between edges).",
            &[
                ("direction=\"sent\"", load(&peers.frames_sent)),
                ("direction=\"received\"", load(&peers.frames_received)),
                ("direction=\"dropped\"", load(&peers.frames_dropped)),
                ("direction=\"malformed\"", load(&peers.frames_malformed)),
            ],
        );
        family(
            "multistream_peer_connections_refused_total",
            "counter",
            "Peer connections refused: the remote is not in this cluster's peer list.",
            &[("", load(&peers.connections_refused))],
        );
        family(
            "multistream_peer_connections",
            "gauge",
            "Outgoing peer connections up.",
            &[("", load(&peers.connections_up))],
        );
        family(
            "multistream_peer_connections_opened_total",
            "counter",
            "Outgoing peer connections made: first contacts and reconnections after a failure or a peer's restart.",
            &[("", load(&peers.connections_opened))],
        );
        family(
            "multistream_peer_assets_fetched_total",
            "counter",
            "Uploaded assets fetched from other edges (by content address, checked).",
            &[("", load(&peers.assets_fetched))],
        );
    }
    if !links.is_empty() {
        link_families(&mut out, links);
    }
    if let Some(relay) = &snapshot.relay {
        relay_families(&mut out, relay);
    }
    if let Some(status) = plugins {
        plugin_families(&mut out, status);
    }
    out
}

fn link_families(out: &mut String, links: &[crate::peer::LinkView]) {
    let _ = writeln!(
        out,
        "# HELP multistream_peer_link_up Whether the QUIC link to another edge is up (checked every 2 s).\n# TYPE multistream_peer_link_up gauge"
    );
    for link in links {
        let _ = writeln!(
            out,
            "multistream_peer_link_up{{peer=\"{}\"}} {}",
            link.peer,
            u8::from(link.up)
        );
    }
    let _ = writeln!(
        out,
        "# HELP multistream_peer_rtt_seconds Round-trip time to another edge, as QUIC estimates it (absent while unknown).\n# TYPE multistream_peer_rtt_seconds gauge"
    );
    for link in links.iter().filter(|l| l.up) {
        if let Some(rtt) = link.rtt {
            let _ = writeln!(
                out,
                "multistream_peer_rtt_seconds{{peer=\"{}\"}} {:.6}",
                link.peer,
                rtt.as_secs_f64()
            );
        }
    }
}

fn relay_families(out: &mut String, relay: &crate::media::RelaySnapshot) {
    let mut family = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    let (core, shell) = (&relay.core, &relay.shell);
    family(
        "multistream_relay_imports",
        "gauge",
        "Tracks this edge receives from other edges.",
        relay.imports as u64,
    );
    family(
        "multistream_relay_exports",
        "gauge",
        "Tracks this edge sends to other edges, one per (track, edge).",
        relay.exports as u64,
    );
    family(
        "multistream_relay_remote_publishers",
        "gauge",
        "Publishers on other edges that subscribers here can watch.",
        relay.remote_publishers as u64,
    );
    family(
        "multistream_relay_packets_out_total",
        "counter",
        "Relayed packets sent to other edges (one per importing edge).",
        core.datagrams_out,
    );
    family(
        "multistream_relay_packets_in_total",
        "counter",
        "Relayed packets received from other edges.",
        core.datagrams_in,
    );
    family(
        "multistream_relay_packets_unknown_total",
        "counter",
        "Relayed packets on a channel this edge did not subscribe to.",
        core.datagrams_unknown,
    );
    family(
        "multistream_relay_packets_delivered_total",
        "counter",
        "Relayed packets handed to subscribers here.",
        shell.delivered,
    );
    family(
        "multistream_relay_packets_malformed_total",
        "counter",
        "Relayed datagrams or packets that could not be read.",
        shell.malformed,
    );
    family(
        "multistream_relay_packets_unknown_codec_total",
        "counter",
        "Relayed packets whose payload type the origin's codec table does not name.",
        shell.unknown_codec,
    );
    family(
        "multistream_relay_subscriptions_refused_total",
        "counter",
        "Relay subscriptions this edge refused (unknown track, limit, loop, too far).",
        core.subscriptions_refused,
    );
    family(
        "multistream_relay_keyframe_requests_total",
        "counter",
        "Keyframe requests sent toward an origin edge.",
        core.keyframes_forwarded,
    );
    family(
        "multistream_relay_stalls_total",
        "counter",
        "Imports that stopped getting media (a link down or an origin gone quiet).",
        core.stalls,
    );
    family(
        "multistream_relay_resumes_total",
        "counter",
        "Stalled imports whose media came back.",
        core.resumes,
    );
    family(
        "multistream_relay_catalogs_sent_total",
        "counter",
        "Catalogs of relayable publishers sent to other edges.",
        shell.catalogs_sent,
    );
    family(
        "multistream_relay_catalogs_received_total",
        "counter",
        "Catalogs received from other edges.",
        shell.catalogs_received,
    );
    family(
        "multistream_relay_queued",
        "gauge",
        "Relayed datagrams waiting for a connection's buffer.",
        relay.queued as u64,
    );
    let _ = writeln!(
        out,
        "# HELP multistream_relay_queue_dropped_total Relayed datagrams shed from full queues, video first.\n# TYPE multistream_relay_queue_dropped_total counter\nmultistream_relay_queue_dropped_total{{kind=\"audio\"}} {}\nmultistream_relay_queue_dropped_total{{kind=\"video\"}} {}",
        relay.dropped_audio, relay.dropped_video
    );
    type Pick = fn(&crate::cascade::LinkFigures) -> u64;
    let per_link: [(&str, &str, &str, Pick); 9] = [
        (
            "multistream_relay_link_up",
            "gauge",
            "Whether this edge's relay connection to another edge is up.",
            |l| u64::from(l.up),
        ),
        (
            "multistream_relay_datagrams_sent_total",
            "counter",
            "Relay datagrams sent to another edge.",
            |l| l.datagrams_sent,
        ),
        (
            "multistream_relay_bytes_sent_total",
            "counter",
            "Relay datagram bytes sent to another edge (the egress a cascade costs).",
            |l| l.bytes_sent,
        ),
        (
            "multistream_relay_datagrams_received_total",
            "counter",
            "Relay datagrams received from another edge.",
            |l| l.datagrams_received,
        ),
        (
            "multistream_relay_bytes_received_total",
            "counter",
            "Relay datagram bytes received from another edge.",
            |l| l.bytes_received,
        ),
        (
            "multistream_relay_datagrams_too_large_total",
            "counter",
            "Relay datagrams not sent: larger than the path carries.",
            |l| l.datagrams_too_large,
        ),
        (
            "multistream_relay_datagrams_dropped_inbound_total",
            "counter",
            "Relay datagrams received while the media thread had no room for them.",
            |l| l.datagrams_dropped_inbound,
        ),
        (
            "multistream_relay_messages_dropped_total",
            "counter",
            "Relay control messages not sent (queue full or link down) or not taken.",
            |l| l.messages_dropped,
        ),
        (
            "multistream_relay_messages_malformed_total",
            "counter",
            "Relay control messages from another edge that were refused.",
            |l| l.messages_malformed,
        ),
    ];
    for (name, kind, help, pick) in per_link {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for link in &relay.links {
            let _ = writeln!(out, "{name}{{peer=\"{}\"}} {}", link.peer, pick(link));
        }
    }
}

fn plugin_families(out: &mut String, status: &crate::plugins::PluginsStatus) {
    type Pick = fn(&crate::plugins::PluginStatus) -> String;
    let families: [(&str, &str, &str, Pick); 7] = [
        (
            "multistream_plugin_calls_total",
            "counter",
            "Calls into a plugin (events and actions), in every class.",
            |p| p.calls.to_string(),
        ),
        (
            "multistream_plugin_failures_total",
            "counter",
            "Plugin calls that trapped, timed out, ran out of memory or answered against the rules.",
            |p| p.failures.to_string(),
        ),
        (
            "multistream_plugin_restarts_total",
            "counter",
            "Plugin instances rebuilt (snapshot plus replay) after a failure.",
            |p| p.restarts.to_string(),
        ),
        (
            "multistream_plugin_call_seconds_total",
            "counter",
            "Time spent in plugin calls; divided by calls, the mean call latency.",
            |p| format!("{:.6}", p.call_seconds),
        ),
        (
            "multistream_plugin_classes",
            "gauge",
            "Classes a plugin runs in on this edge.",
            |p| p.classes.to_string(),
        ),
        (
            "multistream_plugin_degraded_classes",
            "gauge",
            "Classes in which a plugin is degraded (failed recently, being rebuilt).",
            |p| p.degraded.to_string(),
        ),
        (
            "multistream_plugin_quarantined_classes",
            "gauge",
            "Classes in which a plugin is switched off after repeated failures.",
            |p| p.quarantined.to_string(),
        ),
    ];
    for (name, kind, help, pick) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for plugin in &status.plugins {
            let _ = writeln!(
                out,
                "{name}{{plugin=\"{}\",version=\"{}\"}} {}",
                plugin.name,
                plugin.version,
                pick(plugin)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP multistream_plugin_packages_refused Plugin packages in the plugin directory that were refused (unsigned, untrusted, altered, broken).\n# TYPE multistream_plugin_packages_refused gauge\nmultistream_plugin_packages_refused {}",
        status.refused.len()
    );
    let _ = writeln!(
        out,
        "# HELP multistream_plugin_upgrades_total Hot upgrades of a plugin in a running class, by outcome.\n# TYPE multistream_plugin_upgrades_total counter\nmultistream_plugin_upgrades_total{{outcome=\"done\"}} {}\nmultistream_plugin_upgrades_total{{outcome=\"failed\"}} {}",
        status.upgrades, status.upgrades_failed
    );
}
