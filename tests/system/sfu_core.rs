//! The SFU core in virtual time: real str0m peers (ICE, DTLS, SRTP) exchanging datagrams with the
//! core through an in-memory network, so seconds of a class run in milliseconds.

use std::time::Duration;

use multistream_node::sfu::{AddPeerError, RemoveReason, SESSION_PEERS_MAX, SfuEvent};
use multistream_proto::Source;
use multistream_tests::client::Role;
use multistream_tests::world::World;

fn removed(world: &World, peer: multistream_node::sfu::PeerId) -> Option<RemoveReason> {
    world.events.iter().find_map(|event| match event {
        SfuEvent::PeerRemoved {
            peer: p, reason, ..
        } if *p == peer => Some(*reason),
        _ => None,
    })
}

fn video_frames(world: &World, client: usize) -> u64 {
    world.clients[client]
        .video()
        .map_or(0, |v| v.frames_by_layer.iter().sum())
}

#[test]
fn subscribers_receive_audio_and_video_starting_on_a_keyframe() {
    let mut world = World::new(SESSION_PEERS_MAX);
    let (teacher, _) = world
        .join(Role::Publisher { simulcast: true }, Source::Camera)
        .expect("publishes");
    assert!(
        world.run_until(Duration::from_secs(5), |w| w.clients[teacher].connected),
        "publisher connects"
    );
    // Let the publisher run well past its first keyframe: the next periodic one is 10 s away.
    world.run_for(Duration::from_secs(2));
    let (one, _) = world
        .join(Role::Subscriber, Source::Camera)
        .expect("subscribes");
    let (two, _) = world
        .join(Role::Subscriber, Source::Camera)
        .expect("subscribes");
    let started = world.now;
    assert!(
        world.run_until(Duration::from_secs(5), |w| video_frames(w, one) > 10
            && video_frames(w, two) > 10),
        "both subscribers receive video"
    );
    let first_frame_after = world.now - started;
    for student in [one, two] {
        let video = world.clients[student].video().expect("has a video line");
        assert_eq!(
            video.first_frame_keyframe,
            Some(true),
            "decoding starts on a keyframe"
        );
        let audio = world.clients[student].audio().expect("has an audio line");
        assert!(audio.packets > 10, "audio arrives: {audio:?}");
    }
    // The keyframe came from a request, not from the publisher's schedule.
    assert!(world.clients[teacher].keyframe_requests >= 1);
    let counters = world.sfu.counters();
    assert!(counters.keyframe_requests_sent >= 1);
    assert!(counters.rtp_forwarded > 0);
    assert!(
        first_frame_after < Duration::from_secs(1),
        "first frame took {first_frame_after:?}"
    );
}

#[test]
fn keyframe_requests_from_a_crowd_are_coalesced() {
    let mut world = World::new(SESSION_PEERS_MAX);
    let (teacher, _) = world
        .join(Role::Publisher { simulcast: false }, Source::Camera)
        .expect("publishes");
    assert!(world.run_until(Duration::from_secs(5), |w| w.clients[teacher].connected));
    let students: Vec<usize> = (0..12)
        .map(|_| {
            world
                .join(Role::Subscriber, Source::Camera)
                .expect("subscribes")
                .0
        })
        .collect();
    assert!(world.run_until(Duration::from_secs(5), |w| {
        students.iter().all(|&s| video_frames(w, s) > 0)
    }));
    let counters = world.sfu.counters();
    assert!(
        counters.keyframe_requests_sent <= 4,
        "twelve joins cost {} keyframe requests",
        counters.keyframe_requests_sent
    );
    assert!(counters.keyframe_requests_coalesced >= 1);
}

#[test]
fn simulcast_layers_switch_only_on_keyframes_and_follow_what_is_sent() {
    let mut world = World::new(SESSION_PEERS_MAX);
    let (teacher, _) = world
        .join(Role::Publisher { simulcast: true }, Source::Camera)
        .expect("publishes");
    assert!(world.run_until(Duration::from_secs(5), |w| w.clients[teacher].connected));
    let (student, _) = world
        .join(Role::Subscriber, Source::Camera)
        .expect("subscribes");
    // With a clean network the estimate climbs and the subscriber ends on the top layer.
    let reached_top = world.run_until(Duration::from_secs(30), |w| {
        w.clients[student]
            .video()
            .is_some_and(|v| v.last_layer == Some(2) && v.frames_since_change > 30)
    });
    assert!(
        reached_top,
        "top layer reached: {:?}",
        world.clients[student].video()
    );
    // The browser stops sending the top layer: the subscriber moves down, on a keyframe.
    world.clients[teacher].paused_layers[2] = true;
    let moved_down = world.run_until(Duration::from_secs(10), |w| {
        w.clients[student]
            .video()
            .is_some_and(|v| v.last_layer == Some(1) && v.frames_since_change > 10)
    });
    assert!(
        moved_down,
        "moved to the middle layer: {:?}",
        world.clients[student].video()
    );
    let video = world.clients[student].video().expect("video line");
    assert!(!video.layer_changes_on_keyframe.is_empty());
    assert!(
        video
            .layer_changes_on_keyframe
            .iter()
            .all(|on_keyframe| *on_keyframe),
        "every switch lands on a keyframe: {video:?}"
    );
    assert!(world.sfu.counters().layer_switches >= 2);
}

#[test]
fn leaving_peers_are_freed_and_a_returning_teacher_is_seen_again() {
    let mut world = World::new(SESSION_PEERS_MAX);
    let (teacher, teacher_peer) = world
        .join(Role::Publisher { simulcast: false }, Source::Camera)
        .expect("publishes");
    let (stays, _) = world
        .join(Role::Subscriber, Source::Camera)
        .expect("subscribes");
    let (leaves, leaves_peer) = world
        .join(Role::Subscriber, Source::Camera)
        .expect("subscribes");
    assert!(
        world.run_until(Duration::from_secs(5), |w| video_frames(w, stays) > 5
            && video_frames(w, leaves) > 5)
    );

    // A subscriber leaves (WHEP DELETE): it is gone and nothing more is sent to it.
    let now = world.now;
    assert!(world.sfu.remove_peer(now, leaves_peer));
    world.pump();
    assert_eq!(removed(&world, leaves_peer), Some(RemoveReason::Left));
    let leaver_addr = world.clients[leaves].addr;
    let sent_before = world.sent_to.get(&leaver_addr).copied().unwrap_or(0);
    world.run_for(Duration::from_secs(1));
    assert_eq!(
        world.sent_to.get(&leaver_addr).copied().unwrap_or(0),
        sent_before,
        "nothing forwarded to a peer that left"
    );
    assert_eq!(world.sfu.gauges().subscribers, 1);
    assert!(
        !world.sfu.remove_peer(now, leaves_peer),
        "removing twice is a no-op"
    );

    // The teacher's browser dies without a goodbye: ICE times out and the peer is reaped.
    world.blackholed.insert(world.clients[teacher].addr);
    assert!(
        world.run_until(Duration::from_secs(40), |w| removed(w, teacher_peer)
            .is_some()),
        "a silent publisher is reaped"
    );
    assert_eq!(
        removed(&world, teacher_peer),
        Some(RemoveReason::IceTimeout)
    );
    assert_eq!(world.sfu.gauges().publishers, 0);

    // The teacher comes back on a new connection: the waiting student sees them again, from a
    // keyframe, on the same media lines (no renegotiation).
    let frames_before = video_frames(&world, stays);
    let (_back, _) = world
        .join(Role::Publisher { simulcast: false }, Source::Camera)
        .expect("publishes again");
    assert!(
        world.run_until(Duration::from_secs(5), |w| video_frames(w, stays)
            > frames_before + 10),
        "video resumes for the student who stayed"
    );
}

#[test]
fn students_watch_the_teacher_even_when_a_speaker_publishes_later() {
    let mut world = World::new(SESSION_PEERS_MAX);
    let (_, teacher) = world
        .join_as(
            Role::Publisher { simulcast: false },
            Source::Camera,
            Some("teacher-1"),
            true,
        )
        .expect("the teacher publishes");
    let (watcher, watcher_peer) = world
        .join_as(Role::Subscriber, Source::Camera, Some("student-1"), false)
        .expect("a student watches");
    assert!(world.run_until(Duration::from_secs(5), |w| video_frames(w, watcher) > 5));
    assert_eq!(world.sfu.feed_of(watcher_peer), Some(teacher));
    // Another student is made a speaker and publishes: the class keeps watching the teacher,
    // and the speaker, who also watches, sees the teacher rather than itself.
    let (_, speaker) = world
        .join_as(
            Role::Publisher { simulcast: false },
            Source::Camera,
            Some("student-2"),
            false,
        )
        .expect("the speaker publishes");
    let (_, speaker_watch) = world
        .join_as(Role::Subscriber, Source::Camera, Some("student-2"), false)
        .expect("the speaker also watches");
    world.run_for(Duration::from_secs(1));
    assert_eq!(world.sfu.feed_of(watcher_peer), Some(teacher));
    assert_eq!(world.sfu.feed_of(speaker_watch), Some(teacher));
    // With the teacher gone, the speaker is who there is to watch (but not for itself).
    let now = world.now;
    assert!(world.sfu.remove_peer(now, teacher));
    world.run_for(Duration::from_millis(200));
    assert_eq!(world.sfu.feed_of(watcher_peer), Some(speaker));
    assert_eq!(world.sfu.feed_of(speaker_watch), None);
}

#[test]
fn a_peer_that_never_completes_dtls_is_reaped() {
    let mut world = World::new(SESSION_PEERS_MAX);
    let (ghost, ghost_peer) = world
        .join(Role::Subscriber, Source::Camera)
        .expect("offer accepted");
    world.blackholed.insert(world.clients[ghost].addr);
    assert_eq!(world.sfu.gauges().connecting, 1);
    assert!(world.run_until(Duration::from_secs(20), |w| {
        removed(w, ghost_peer).is_some()
    }));
    assert_eq!(
        removed(&world, ghost_peer),
        Some(RemoveReason::NeverConnected)
    );
    assert_eq!(world.sfu.gauges().subscribers, 0);
}

#[test]
fn bad_offers_get_typed_errors_and_limits_hold() {
    let mut world = World::new(2);
    let now = world.now;
    let spec = |kind| multistream_node::sfu::PeerSpec {
        session: "class".parse().expect("valid"),
        participant: "x".parse().expect("valid"),
        kind,
        source: Source::Camera,
        lead: false,
    };
    use multistream_node::sfu::PeerKind::{Publisher, Subscriber};
    assert!(matches!(
        world.sfu.add_peer(now, spec(Publisher), "not sdp at all"),
        Err(AddPeerError::SdpMalformed(_))
    ));
    assert!(matches!(
        world.sfu.add_peer(now, spec(Publisher), ""),
        Err(AddPeerError::SdpMalformed(_) | AddPeerError::WrongDirection(_))
    ));
    let five_lines = "v=0\r\n".to_owned() + &"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n".repeat(5);
    assert!(matches!(
        world.sfu.add_peer(now, spec(Publisher), &five_lines),
        Err(AddPeerError::TooManyTracks { found: 5 })
    ));

    // A WHEP-style (receive-only) offer sent to WHIP is refused, and the other way round.
    let (_, recv_offer) = multistream_tests::client::Client::new(
        now,
        now,
        "127.0.0.1:7000".parse().expect("addr"),
        Role::Subscriber,
    );
    assert!(matches!(
        world.sfu.add_peer(now, spec(Publisher), &recv_offer),
        Err(AddPeerError::WrongDirection(_))
    ));
    let (_, send_offer) = multistream_tests::client::Client::new(
        now,
        now,
        "127.0.0.1:7001".parse().expect("addr"),
        Role::Publisher { simulcast: true },
    );
    assert!(matches!(
        world.sfu.add_peer(now, spec(Subscriber), &send_offer),
        Err(AddPeerError::WrongDirection(_))
    ));

    // The session limit (2 here) refuses the third peer.
    world
        .join(Role::Publisher { simulcast: true }, Source::Camera)
        .expect("first fits");
    world
        .join(Role::Subscriber, Source::Camera)
        .expect("second fits");
    assert!(matches!(
        world.join(Role::Subscriber, Source::Camera),
        Err(AddPeerError::SessionFull)
    ));
}

#[test]
fn garbage_datagrams_are_counted_and_harm_no_one() {
    let mut world = World::new(SESSION_PEERS_MAX);
    let (teacher, _) = world
        .join(Role::Publisher { simulcast: false }, Source::Camera)
        .expect("publishes");
    let (student, _) = world
        .join(Role::Subscriber, Source::Camera)
        .expect("subscribes");
    assert!(world.run_until(Duration::from_secs(5), |w| video_frames(w, student) > 5));
    let stranger = "127.0.0.1:9999".parse().expect("addr");
    let student_addr = world.clients[student].addr;
    let teacher_addr = world.clients[teacher].addr;
    let mut seed: u32 = 0x9e37_79b9;
    for round in 0..2_000u32 {
        // A cheap deterministic generator: varied lengths and first bytes, including ones that
        // look like STUN (0–3), DTLS (20–63) and RTP/RTCP (128–191).
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let length = (seed % 1_400) as usize;
        let bytes: Vec<u8> = (0..length)
            .map(|i| (seed.rotate_left(i as u32 % 32) >> 3) as u8)
            .collect();
        let from = match round % 3 {
            0 => stranger,
            1 => student_addr,
            _ => teacher_addr,
        };
        world.inject(from, &bytes);
    }
    world.inject(stranger, &[]);
    let counters = world.sfu.counters().clone();
    assert!(
        counters.datagrams_malformed + counters.datagrams_unrouted > 0,
        "{counters:?}"
    );
    // Both peers are still here and media still flows.
    let before = video_frames(&world, student);
    world.run_for(Duration::from_secs(2));
    assert!(
        video_frames(&world, student) > before + 30,
        "video keeps flowing"
    );
    assert_eq!(world.sfu.gauges().publishers, 1);
    assert_eq!(world.sfu.gauges().subscribers, 1);
}

#[test]
fn upstream_loss_is_repaired_by_nack_and_retransmission() {
    let mut world = World::new(SESSION_PEERS_MAX);
    let (teacher, _) = world
        .join(Role::Publisher { simulcast: false }, Source::Camera)
        .expect("publishes");
    let (student, _) = world
        .join(Role::Subscriber, Source::Camera)
        .expect("subscribes");
    world.clients[student].track_sequence = true;
    assert!(world.run_until(Duration::from_secs(5), |w| video_frames(w, student) > 5));
    // One datagram in twenty from the teacher to the node is lost from now on.
    world.lossy = Some((world.clients[teacher].addr, 20));
    world.run_for(Duration::from_secs(5));
    world.lossy = None;
    world.run_for(Duration::from_millis(500));
    let video = world.clients[student].video().expect("video line");
    let span = video.highest_seq.unwrap_or(0) - video.lowest_seq.unwrap_or(0) + 1;
    assert!(span > 200, "enough video to judge: {span} packets");
    assert!(
        video.completeness() > 0.995,
        "with 5 % loss upstream the student still gets {:.1} % of packets",
        video.completeness() * 100.0
    );
}

#[test]
fn ice_without_dtls_is_reported_as_a_dtls_failure() {
    let mut world = World::new(SESSION_PEERS_MAX);
    let (client, peer) = world
        .join(Role::Subscriber, Source::Camera)
        .expect("offer accepted");
    // The client's DTLS records (first byte 20–63, RFC 7983) never arrive, as when the node
    // refuses a client's certificate type; its STUN checks do.
    let addr = world.clients[client].addr;
    world.drop_if = Some(Box::new(move |from, _, bytes| {
        from == addr && bytes.first().is_some_and(|b| (20..=63).contains(b))
    }));
    assert!(world.run_until(Duration::from_secs(20), |w| removed(w, peer).is_some()));
    assert_eq!(removed(&world, peer), Some(RemoveReason::DtlsIncomplete));
}

/// Mutated offers (truncated, lines dropped, doubled or swapped, bytes flipped, long values)
/// never panic the core: each is accepted or refused with a typed error.
#[test]
fn mutated_offers_never_panic_the_core() {
    let mut world = World::new(SESSION_PEERS_MAX);
    let now = world.now;
    let (_, publish_offer) = multistream_tests::client::Client::new(
        now,
        now,
        "127.0.0.1:7100".parse().expect("addr"),
        Role::Publisher { simulcast: true },
    );
    let (_, watch_offer) = multistream_tests::client::Client::new(
        now,
        now,
        "127.0.0.1:7101".parse().expect("addr"),
        Role::Subscriber,
    );
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move |bound: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % bound.max(1) as u64) as usize
    };
    let mut refused = 0;
    for round in 0..1_500 {
        let (base, kind) = if round % 2 == 0 {
            (&publish_offer, multistream_node::sfu::PeerKind::Publisher)
        } else {
            (&watch_offer, multistream_node::sfu::PeerKind::Subscriber)
        };
        let mut lines: Vec<String> = base.lines().map(str::to_owned).collect();
        for _ in 0..1 + next(4) {
            let at = next(lines.len());
            match next(6) {
                0 => {
                    lines.remove(at);
                }
                1 => {
                    let copy = lines[at].clone();
                    lines.insert(at, copy);
                }
                2 => {
                    let other = next(lines.len());
                    lines.swap(at, other);
                }
                3 => {
                    let cut = next(lines[at].len() + 1);
                    lines[at].truncate(cut);
                }
                4 => lines[at].push_str(&"9".repeat(next(300))),
                _ => {
                    let mut bytes = lines[at].clone().into_bytes();
                    if !bytes.is_empty() {
                        let i = next(bytes.len());
                        bytes[i] = b"=:; 0aZ\x00\xff"[next(9)];
                    }
                    lines[at] = String::from_utf8_lossy(&bytes).into_owned();
                }
            }
            if lines.is_empty() {
                break;
            }
        }
        let offer = lines.join("\r\n") + "\r\n";
        let spec = multistream_node::sfu::PeerSpec {
            session: format!("fuzz{}", round % 7).parse().expect("valid"),
            participant: "fuzzer".parse().expect("valid"),
            kind,
            source: Source::Camera,
            lead: false,
        };
        match world.sfu.add_peer(now, spec, &offer) {
            Ok((peer, _)) => {
                world.sfu.remove_peer(now, peer);
            }
            Err(_) => refused += 1,
        }
        world.pump();
    }
    assert!(refused > 0, "some mutations must be refused");
    assert_eq!(
        world.sfu.gauges().publishers + world.sfu.gauges().subscribers,
        0
    );
}

/// Two edges in step: a teacher publishes on edge A, whose core hands the packets out for
/// relaying; edge B's core takes them for a remote publisher, and a student there watches it
/// like a local one. Keyframe requests from B's student reach the teacher on A.
#[test]
fn a_publisher_on_one_edge_is_watched_on_another_through_relayed_packets() {
    use multistream_node::sfu::{PeerKind, PeerSpec};
    let mut a = World::new(SESSION_PEERS_MAX);
    let mut b = World::new(SESSION_PEERS_MAX);
    let (teacher, publisher) = a
        .join_as(
            Role::Publisher { simulcast: true },
            Source::Camera,
            Some("teacher"),
            true,
        )
        .expect("publishes");
    assert!(
        a.run_until(Duration::from_secs(5), |w| w.clients[teacher].connected),
        "publisher connects"
    );
    a.run_for(Duration::from_secs(2));
    let tracks = a.sfu.publisher_tracks(publisher).expect("a publisher");
    assert_eq!(tracks.len(), 2, "audio and simulcast video: {tracks:?}");
    a.sfu.set_relayed(publisher, true);
    let spec = PeerSpec {
        session: "class".parse().expect("valid"),
        participant: "teacher".parse().expect("valid"),
        kind: PeerKind::Publisher,
        source: Source::Camera,
        lead: true,
    };
    let remote = b
        .sfu
        .add_remote_publisher(b.now, spec, &tracks)
        .expect("a remote publisher");
    let (student, _) = b
        .join(Role::Subscriber, Source::Camera)
        .expect("subscribes");
    let requests_before = a.clients[teacher].keyframe_requests;
    let mut relayed = 0u64;
    let started = b.now;
    let step = Duration::from_millis(2);
    let mut received = false;
    while b.now - started < Duration::from_secs(5) {
        a.run_for(step);
        let now_b = b.now;
        while let Some((from, packet)) = a.sfu.poll_relayed() {
            assert_eq!(from, publisher);
            relayed += 1;
            b.sfu.handle_relayed(now_b, remote, packet);
        }
        b.pump();
        b.run_for(step);
        while let Some((_, track, layer)) = b.sfu.poll_remote_keyframe() {
            let now_a = a.now;
            a.sfu
                .request_publisher_keyframe(now_a, publisher, track, layer);
        }
        a.pump();
        if video_frames(&b, student) > 10 {
            received = true;
            break;
        }
    }
    assert!(
        received,
        "the student on edge B decodes video ({relayed} packets relayed)"
    );
    let video = b.clients[student].video().expect("a video line");
    assert_eq!(
        video.first_frame_keyframe,
        Some(true),
        "decoding starts on a keyframe"
    );
    let audio = b.clients[student].audio().expect("an audio line");
    assert!(audio.packets > 10, "audio arrives: {audio:?}");
    assert!(
        a.clients[teacher].keyframe_requests > requests_before,
        "B's request for a keyframe reached the teacher on A"
    );
    assert!(b.sfu.counters().relayed_in > 0);
    assert!(
        b.sfu.wanted_layer(remote).is_some(),
        "B knows what layer its student wants"
    );
    println!(
        "first relayed frame after {:?}, {relayed} packets relayed",
        b.now - started
    );
}
