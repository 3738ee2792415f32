//! The relay core in virtual time: edges joined by links with a fixed delay that the tests cut
//! and restore, and packets counted on every hop.

use std::collections::BTreeMap;

use super::*;

const LINK_DELAY: Duration = Duration::from_millis(5);
const STEP: Duration = Duration::from_millis(1);

enum Wire {
    Control(RelayMessage),
    Datagram {
        channel: u32,
        layer: u8,
        packet: Arc<[u8]>,
    },
}

struct Net {
    now: Instant,
    cores: Vec<RelayCore>,
    ids: Vec<NodeId>,
    /// Cut links, both directions.
    cut: BTreeSet<(usize, usize)>,
    in_flight: Vec<(Instant, usize, usize, Wire)>,
    delivered: Vec<Vec<(TrackId, u8)>>,
    local_keyframes: Vec<Vec<(TrackId, u8)>>,
    /// Datagrams sent, by (from, to).
    datagrams: BTreeMap<(usize, usize), u64>,
    refusals: Vec<Vec<String>>,
    next_tick: Instant,
}

impl Net {
    fn new(edges: usize) -> Net {
        let ids: Vec<NodeId> = (0..edges).map(|i| NodeId(format!("edge{i}"))).collect();
        let now = Instant::now();
        Net {
            now,
            cores: ids.iter().map(|id| RelayCore::new(id.clone())).collect(),
            ids,
            cut: BTreeSet::new(),
            in_flight: Vec::new(),
            delivered: vec![Vec::new(); edges],
            local_keyframes: vec![Vec::new(); edges],
            datagrams: BTreeMap::new(),
            refusals: vec![Vec::new(); edges],
            next_tick: now,
        }
    }

    fn index(&self, id: &NodeId) -> usize {
        self.ids.iter().position(|i| i == id).expect("a known edge")
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        !self.cut.contains(&(a.min(b), a.max(b)))
    }

    fn set_link(&mut self, a: usize, b: usize, up: bool) {
        if up {
            self.cut.remove(&(a.min(b), a.max(b)));
        } else {
            self.cut.insert((a.min(b), a.max(b)));
        }
        let (ida, idb) = (self.ids[a].clone(), self.ids[b].clone());
        let now = self.now;
        self.cores[a].set_link(now, &idb, up);
        self.cores[b].set_link(now, &ida, up);
        self.drain();
    }

    fn drain(&mut self) {
        for from in 0..self.cores.len() {
            while let Some(output) = self.cores[from].poll_output() {
                match output {
                    RelayOutput::Send { to, message } => {
                        let to = self.index(&to);
                        if let RelayMessage::Refused { code, .. } = &message {
                            self.refusals[to].push(code.clone());
                        }
                        if self.linked(from, to) {
                            self.in_flight.push((
                                self.now + LINK_DELAY,
                                from,
                                to,
                                Wire::Control(message),
                            ));
                        }
                    }
                    RelayOutput::Datagram {
                        to,
                        channel,
                        layer,
                        packet,
                        ..
                    } => {
                        let to = self.index(&to);
                        *self.datagrams.entry((from, to)).or_default() += 1;
                        if self.linked(from, to) {
                            self.in_flight.push((
                                self.now + LINK_DELAY,
                                from,
                                to,
                                Wire::Datagram {
                                    channel,
                                    layer,
                                    packet,
                                },
                            ));
                        }
                    }
                    RelayOutput::Deliver { track, layer, .. } => {
                        self.delivered[from].push((track, layer));
                    }
                    RelayOutput::LocalKeyframe { track, layer } => {
                        self.local_keyframes[from].push((track, layer));
                    }
                }
            }
        }
    }

    /// Advances virtual time by `span`, delivering what is due and running timers.
    fn run(&mut self, span: Duration) {
        let end = self.now + span;
        while self.now < end {
            self.now += STEP;
            let now = self.now;
            let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.in_flight)
                .into_iter()
                .partition(|(at, ..)| *at <= now);
            self.in_flight = later;
            for (_, from, to, wire) in due {
                if !self.linked(from, to) {
                    continue;
                }
                let from_id = self.ids[from].clone();
                match wire {
                    Wire::Control(message) => self.cores[to].handle_message(now, from_id, message),
                    Wire::Datagram {
                        channel,
                        layer,
                        packet,
                    } => self.cores[to].handle_datagram(now, &from_id, channel, layer, packet),
                }
            }
            if now >= self.next_tick {
                for core in &mut self.cores {
                    core.handle_timeout(now);
                }
                self.next_tick = now + Duration::from_millis(250);
            }
            self.drain();
        }
    }

    /// `packets` packets of each layer up to `layers` from the origin edge.
    fn publish(&mut self, origin: usize, track: &TrackId, layers: u8, packets: usize) {
        for _ in 0..packets {
            for layer in 0..=layers {
                let packet: Arc<[u8]> = vec![layer; 100].into();
                self.cores[origin].handle_local_media(track, layer, packet);
            }
        }
        self.drain();
    }

    fn demand(&mut self, edge: usize, track: &TrackId, route: &[usize], layer: Option<u8>) {
        let route = route.iter().map(|i| self.ids[*i].clone()).collect();
        let now = self.now;
        self.cores[edge].set_demand(now, track, route, layer);
        self.drain();
    }

    fn sent(&self, from: usize, to: usize) -> u64 {
        self.datagrams.get(&(from, to)).copied().unwrap_or(0)
    }
}

fn track(kind: TrackKind) -> TrackId {
    TrackId {
        session: "physics".parse().expect("id"),
        publisher: "teacher".parse().expect("id"),
        source: Source::Camera,
        kind,
    }
}

fn layers_delivered(net: &Net, edge: usize) -> BTreeMap<u8, usize> {
    let mut counts = BTreeMap::new();
    for (_, layer) in &net.delivered[edge] {
        *counts.entry(*layer).or_default() += 1;
    }
    counts
}

#[test]
fn an_edge_gets_one_copy_of_the_layers_it_needs_and_keyframes_on_request() {
    let mut net = Net::new(2);
    let video = track(TrackKind::Video);
    net.cores[0].set_local(video.clone(), true);
    net.demand(1, &video, &[0], Some(2));
    net.run(Duration::from_millis(20));
    assert!(
        net.local_keyframes[0].contains(&(video.clone(), 2)),
        "a new import asks the publisher for a keyframe"
    );
    net.publish(0, &video, 2, 10);
    net.run(Duration::from_millis(20));
    assert!(net.cores[1].is_flowing(&video));
    assert_eq!(net.sent(0, 1), 30, "each packet of layers 0 to 2 once");
    assert_eq!(
        layers_delivered(&net, 1),
        BTreeMap::from([(0, 10), (1, 10), (2, 10)])
    );

    // Fewer layers needed: the higher ones stop crossing the link.
    net.demand(1, &video, &[0], Some(0));
    net.run(Duration::from_millis(20));
    assert_eq!(
        net.cores[0].exports_of(&video),
        vec![(net.ids[1].clone(), 0)]
    );
    net.publish(0, &video, 2, 10);
    net.run(Duration::from_millis(20));
    assert_eq!(net.sent(0, 1), 40);

    // Keyframe requests go to the origin's publisher, coalesced.
    net.local_keyframes[0].clear();
    let now = net.now;
    net.cores[1].request_keyframe(now, &video, 0);
    net.cores[1].request_keyframe(now, &video, 0);
    net.drain();
    net.run(Duration::from_millis(20));
    assert_eq!(net.local_keyframes[0], vec![(video.clone(), 0)]);
    net.run(KEYFRAME_INTERVAL);
    let now = net.now;
    net.cores[1].request_keyframe(now, &video, 0);
    net.drain();
    net.run(Duration::from_millis(20));
    assert_eq!(net.local_keyframes[0].len(), 2);

    // The last subscriber leaves: the relay stops.
    net.demand(1, &video, &[0], None);
    net.run(Duration::from_millis(20));
    assert!(net.cores[0].exports_of(&video).is_empty());
    net.publish(0, &video, 2, 10);
    assert_eq!(net.sent(0, 1), 40, "nothing sent after the unsubscribe");
}

#[test]
fn a_keyframe_asked_for_while_the_import_cannot_flow_is_not_lost() {
    let mut net = Net::new(2);
    let video = track(TrackKind::Video);
    net.cores[0].set_local(video.clone(), true);
    net.demand(1, &video, &[0], Some(2));
    net.run(Duration::from_millis(20));
    // A subscriber here moves to layer 1 while the link is down.
    net.set_link(0, 1, false);
    net.local_keyframes[0].clear();
    let now = net.now;
    net.cores[1].request_keyframe(now, &video, 1);
    net.drain();
    net.run(KEYFRAME_INTERVAL);
    assert!(net.local_keyframes[0].is_empty());
    net.set_link(0, 1, true);
    net.run(Duration::from_millis(20));
    let mut asked: Vec<u8> = net.local_keyframes[0].iter().map(|(_, l)| *l).collect();
    asked.sort();
    assert_eq!(
        asked,
        vec![1, 2],
        "the fresh start asks for the import's layer and the one the subscriber waits for"
    );
}

#[test]
fn relays_chain_through_an_edge_and_each_link_carries_one_copy() {
    let mut net = Net::new(3);
    let video = track(TrackKind::Video);
    net.cores[0].set_local(video.clone(), true);
    // Edge 2 reaches the origin (0) through edge 1; edge 1 watches too.
    net.demand(2, &video, &[1, 0], Some(1));
    net.demand(1, &video, &[0], Some(0));
    net.run(Duration::from_millis(30));
    net.publish(0, &video, 2, 10);
    net.run(Duration::from_millis(30));
    assert_eq!(net.sent(0, 1), 20, "layers 0 and 1 once to edge 1");
    assert_eq!(
        net.sent(0, 2),
        0,
        "the origin sends nothing to edge 2 itself"
    );
    assert_eq!(net.sent(1, 2), 20, "edge 1 passes layers 0 and 1 on");
    assert_eq!(
        layers_delivered(&net, 2),
        BTreeMap::from([(0, 10), (1, 10)])
    );
    assert_eq!(
        layers_delivered(&net, 1),
        BTreeMap::from([(0, 10)]),
        "edge 1's own subscribers get what they need"
    );

    // Edge 1's subscribers leave; it keeps relaying for edge 2.
    net.demand(1, &video, &[0], None);
    net.run(Duration::from_millis(30));
    net.publish(0, &video, 2, 10);
    net.run(Duration::from_millis(30));
    assert_eq!(net.sent(1, 2), 40);
    assert_eq!(layers_delivered(&net, 1).values().sum::<usize>(), 10);

    // A keyframe request from the end of the chain reaches the publisher (once the one the
    // chain asked for when it started is past the coalescing interval).
    net.run(KEYFRAME_INTERVAL);
    net.local_keyframes[0].clear();
    let now = net.now;
    net.cores[2].request_keyframe(now, &video, 1);
    net.drain();
    net.run(Duration::from_millis(30));
    assert_eq!(net.local_keyframes[0], vec![(video.clone(), 1)]);

    // Edge 2 leaves: the whole chain stops.
    net.demand(2, &video, &[1, 0], None);
    net.run(Duration::from_millis(30));
    assert!(net.cores[1].exports_of(&video).is_empty());
    assert!(net.cores[0].exports_of(&video).is_empty());
}

#[test]
fn a_new_route_ends_the_old_one_at_once() {
    let mut net = Net::new(3);
    let video = track(TrackKind::Video);
    net.cores[0].set_local(video.clone(), true);
    net.demand(1, &video, &[0], Some(0));
    net.run(Duration::from_millis(20));
    net.publish(0, &video, 0, 5);
    net.run(Duration::from_millis(20));
    assert_eq!(net.sent(0, 1), 5);
    // Edge 1 now takes the way through edge 2.
    net.demand(1, &video, &[2, 0], Some(0));
    net.run(Duration::from_millis(20));
    assert_eq!(
        net.cores[0].exports_of(&video),
        vec![(net.ids[2].clone(), 0)],
        "edge 0 sends only to edge 2, not until edge 1's export times out"
    );
    net.publish(0, &video, 0, 5);
    net.run(Duration::from_millis(20));
    assert_eq!(net.sent(0, 1), 5);
    assert_eq!(net.sent(2, 1), 5);
    assert_eq!(layers_delivered(&net, 1), BTreeMap::from([(0, 10)]));
}

#[test]
fn a_route_that_loops_or_runs_too_long_is_refused() {
    let mut net = Net::new(3);
    let video = track(TrackKind::Video);
    net.cores[0].set_local(video.clone(), true);
    // 2 → 1 → 2 → 0 passes edge 2 twice.
    net.demand(2, &video, &[1, 2, 0], Some(0));
    net.run(Duration::from_millis(30));
    assert_eq!(net.refusals[2], ["loop"]);
    assert_eq!(
        net.cores[2].refusal(&video).map(|(code, _)| code.as_str()),
        Some("loop")
    );
    let mut long = Net::new(6);
    long.cores[0].set_local(video.clone(), true);
    long.demand(5, &video, &[4, 3, 2, 1, 0], Some(0));
    long.run(Duration::from_millis(50));
    assert!(
        long.refusals[5].contains(&"too_far".to_owned()),
        "{:?}",
        long.refusals
    );
}

#[test]
fn unknown_tracks_and_too_many_tracks_are_refused_clearly() {
    let mut net = Net::new(2);
    let video = track(TrackKind::Video);
    net.demand(1, &video, &[0], Some(0));
    net.run(Duration::from_millis(20));
    assert_eq!(net.refusals[1], ["unknown_track"]);
    // Published a moment later: the next refresh finds it.
    net.cores[0].set_local(video.clone(), true);
    net.run(REFRESH_INTERVAL + Duration::from_millis(300));
    assert_eq!(net.cores[0].exports_of(&video).len(), 1);
    assert!(net.cores[1].refusal(&video).is_none());

    let mut crowded = Net::new(2);
    for n in 0..=RELAYED_TRACKS_PER_PEER_MAX {
        let track = TrackId {
            publisher: format!("p{n}").parse().expect("id"),
            ..track(TrackKind::Audio)
        };
        crowded.cores[0].set_local(track.clone(), true);
        crowded.demand(1, &track, &[0], Some(0));
    }
    crowded.run(Duration::from_millis(20));
    assert_eq!(crowded.refusals[1], ["limit"]);
}

#[test]
fn a_cut_link_freezes_the_relay_and_it_resumes_by_itself() {
    let mut net = Net::new(2);
    let video = track(TrackKind::Video);
    net.cores[0].set_local(video.clone(), true);
    net.demand(1, &video, &[0], Some(2));
    net.run(Duration::from_millis(20));
    net.publish(0, &video, 2, 1);
    net.run(Duration::from_millis(20));
    assert!(net.cores[1].is_flowing(&video));

    net.set_link(0, 1, false);
    for _ in 0..20 {
        net.publish(0, &video, 2, 1);
        net.run(Duration::from_millis(100));
    }
    assert!(!net.cores[1].is_flowing(&video));
    assert_eq!(net.cores[1].counters.stalls, 1);
    let before = net.delivered[1].len();

    net.local_keyframes[0].clear();
    net.set_link(0, 1, true);
    net.run(Duration::from_millis(30));
    assert!(
        net.local_keyframes[0].contains(&(video.clone(), 2)),
        "the restored relay asks for a keyframe"
    );
    net.publish(0, &video, 2, 1);
    net.run(Duration::from_millis(20));
    assert!(net.cores[1].is_flowing(&video));
    assert_eq!(net.delivered[1].len(), before + 3);
    assert_eq!(net.cores[1].counters.resumes, 1);
}

#[test]
fn an_importer_that_vanishes_is_forgotten() {
    let mut net = Net::new(2);
    let video = track(TrackKind::Video);
    net.cores[0].set_local(video.clone(), true);
    net.demand(1, &video, &[0], Some(0));
    net.run(Duration::from_millis(20));
    assert_eq!(net.cores[0].exports_of(&video).len(), 1);
    // Edge 1 is gone without a word (its messages no longer arrive).
    net.cut.insert((0, 1));
    net.run(EXPORT_TIMEOUT + Duration::from_millis(500));
    assert!(net.cores[0].exports_of(&video).is_empty());
}

#[test]
fn a_full_queue_sheds_video_before_audio() {
    let mut queue = SendQueue::default();
    for n in 0..DATAGRAM_QUEUE_MAX {
        let kind = if n % 4 == 0 {
            TrackKind::Audio
        } else {
            TrackKind::Video
        };
        queue.push(kind, (kind, n));
    }
    for n in 0..100 {
        queue.push(TrackKind::Audio, (TrackKind::Audio, DATAGRAM_QUEUE_MAX + n));
    }
    assert_eq!(queue.len(), DATAGRAM_QUEUE_MAX);
    assert_eq!(queue.dropped_video, 100);
    assert_eq!(queue.dropped_audio, 0);
    // Audio comes out first, all of it.
    let first: Vec<TrackKind> = (0..612)
        .filter_map(|_| queue.pop())
        .map(|(k, _)| k)
        .collect();
    assert!(first.iter().all(|k| *k == TrackKind::Audio));
    // Only audio left to shed: the oldest audio goes.
    let mut audio_only = SendQueue::default();
    for n in 0..DATAGRAM_QUEUE_MAX + 5 {
        audio_only.push(TrackKind::Audio, n);
    }
    assert_eq!(audio_only.dropped_audio, 5);
    assert_eq!(audio_only.pop(), Some(5));
    // A video datagram offered to a queue full of audio is dropped itself.
    audio_only.push(TrackKind::Audio, 0);
    audio_only.push(TrackKind::Video, 1);
    assert_eq!(audio_only.dropped_video, 1);
}
