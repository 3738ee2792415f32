//! A WebRTC client made of str0m, for tests and the load generator: it publishes synthetic VP8
//! (optionally as three simulcast layers) and Opus, or subscribes and records what arrives.
//!
//! Sans-IO like the node's core: the caller moves datagrams and time. `tests/system` drives
//! clients in virtual time against the SFU core, and over real UDP against a node process.
//!
//! Every media packet carries a small header after the codec's own bytes: the layer it was sent
//! on and the sender's clock in microseconds, so a receiver can tell which layer reached it and
//! how long forwarding took.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive, Transmit};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

/// Simulcast layers a camera publisher sends, lowest first, as browsers do.
pub const LAYERS: [(&str, u32); 3] = [("q", 150_000), ("h", 500_000), ("f", 1_500_000)];

/// Video frames per second of the synthetic camera.
pub const VIDEO_FPS: u32 = 30;

/// Opus packets per second (20 ms frames).
pub const AUDIO_PPS: u32 = 50;

/// Largest RTP payload the synthetic camera writes.
const PAYLOAD_BYTES_MAX: usize = 1_100;

/// Bytes of the test header: layer index, then send time in microseconds.
const STAMP_BYTES: usize = 9;

/// What a client does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends audio and video; `simulcast` sends the three [`LAYERS`], else one stream at the
    /// middle layer's rate.
    Publisher { simulcast: bool },
    /// Receives one audio and one video line.
    Subscriber,
}

/// What a subscriber has seen on one media line.
#[derive(Debug, Default, Clone)]
pub struct LineStats {
    pub packets: u64,
    pub bytes: u64,
    /// Video only: frames whose first packet arrived, by layer index.
    pub frames_by_layer: [u64; 3],
    /// Video only: whether the very first frame that arrived was a keyframe.
    pub first_frame_keyframe: Option<bool>,
    /// Video only: the layer of the most recent frame.
    pub last_layer: Option<u8>,
    /// Video only: each time the layer changed, whether that frame was a keyframe.
    pub layer_changes_on_keyframe: Vec<bool>,
    /// Video only: frames seen since the last layer change.
    pub frames_since_change: u64,
    /// Distinct sequence numbers received, and their lowest and highest: with loss repaired by
    /// retransmission, `distinct` reaches `highest - lowest + 1`.
    pub distinct: std::collections::HashSet<u64>,
    pub lowest_seq: Option<u64>,
    pub highest_seq: Option<u64>,
}

impl LineStats {
    /// Share of the sequence number span that arrived (1.0 means nothing is missing).
    pub fn completeness(&self) -> f64 {
        match (self.lowest_seq, self.highest_seq) {
            (Some(low), Some(high)) => self.distinct.len() as f64 / (high - low + 1) as f64,
            _ => 0.0,
        }
    }
}

struct SendLine {
    mid: Mid,
    kind: MediaKind,
    pt: Pt,
    /// (rid, next sequence number) per layer.
    layers: Vec<(Option<Rid>, u64)>,
}

/// One client peer connection.
pub struct Client {
    pub rtc: Rtc,
    pub addr: SocketAddr,
    role: Role,
    pending: Option<SdpPendingOffer>,
    sends: Vec<SendLine>,
    frame_index: u64,
    next_video_at: Option<Instant>,
    next_audio_at: Option<Instant>,
    pub connected: bool,
    pub disconnected: bool,
    pub keyframe_requests: u64,
    pub lines: HashMap<Mid, (MediaKind, LineStats)>,
    /// Media lines this client offered to send.
    own_mids: Vec<(Mid, MediaKind)>,
    /// Forwarding delays in microseconds (send stamp to receipt), when the caller's clock base
    /// is shared with the sender's (same process).
    pub delays_us: Vec<u32>,
    /// Delays are recorded only for packets sent at or after this many microseconds past the
    /// clock base, so a measurement can leave out the warm-up.
    pub delay_window_start_us: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub transmits: Vec<Transmit>,
    /// Whether the next video frame must be a keyframe (start, or someone asked).
    keyframe_due: bool,
    /// Whether to record every sequence number (tests of loss repair; off for load).
    pub track_sequence: bool,
    /// Simulcast layers the publisher stopped sending (as a browser does under CPU pressure).
    pub paused_layers: [bool; 3],
    clock_base: Instant,
    timeout: Instant,
}

impl Client {
    /// A client at `addr` and its SDP offer. `clock_base` is the shared zero of send stamps.
    pub fn new(now: Instant, clock_base: Instant, addr: SocketAddr, role: Role) -> (Self, String) {
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .set_rtp_mode(true)
            .set_stats_interval(None)
            .build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").expect("test addresses are valid"));
        let mut lines = HashMap::new();
        let mut own_mids = Vec::new();
        let mut api = rtc.sdp_api();
        match role {
            Role::Publisher { simulcast } => {
                let audio = api.add_media(
                    MediaKind::Audio,
                    Direction::SendOnly,
                    Some("cam".into()),
                    Some("mic".into()),
                    None,
                );
                own_mids.push((audio, MediaKind::Audio));
                let layers = simulcast.then(|| {
                    let mut s = Simulcast::new();
                    for (rid, _) in LAYERS {
                        s.add_send_layer(SimulcastLayer::new(rid));
                    }
                    s
                });
                let video = api.add_media(
                    MediaKind::Video,
                    Direction::SendOnly,
                    Some("cam".into()),
                    Some("camera".into()),
                    layers,
                );
                own_mids.push((video, MediaKind::Video));
            }
            Role::Subscriber => {
                let audio = api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
                let video = api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
                lines.insert(audio, (MediaKind::Audio, LineStats::default()));
                lines.insert(video, (MediaKind::Video, LineStats::default()));
            }
        }
        let (offer, pending) = api.apply().expect("a client with media has an offer");
        let client = Self {
            rtc,
            addr,
            role,
            pending: Some(pending),
            sends: Vec::new(),
            frame_index: 0,
            next_video_at: None,
            next_audio_at: None,
            connected: false,
            disconnected: false,
            keyframe_requests: 0,
            lines,
            own_mids,
            delays_us: Vec::new(),
            delay_window_start_us: Default::default(),
            transmits: Vec::new(),
            keyframe_due: true,
            paused_layers: [false; 3],
            track_sequence: false,
            clock_base,
            timeout: now,
        };
        (client, offer.to_sdp_string())
    }

    /// Applies the server's answer.
    pub fn accept_answer(&mut self, answer_sdp: &str) -> Result<(), String> {
        let answer = SdpAnswer::from_sdp_string(answer_sdp).map_err(|e| e.to_string())?;
        let pending = self.pending.take().ok_or("no offer is pending")?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| e.to_string())
    }

    pub fn timeout(&self) -> Instant {
        let mut next = self.timeout;
        if self.connected {
            for at in [self.next_video_at, self.next_audio_at]
                .into_iter()
                .flatten()
            {
                next = next.min(at);
            }
        }
        next
    }

    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, contents: &[u8]) {
        let Ok(receive) = Receive::new(Protocol::Udp, source, self.addr, contents) else {
            return;
        };
        if self.rtc.handle_input(Input::Receive(now, receive)).is_ok() {
            self.drain(now);
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.rtc.handle_input(Input::Timeout(now)).is_err() {
            // The connection failed for good (for example DTLS gave up): stop asking for time.
            self.fail(now);
            return;
        }
        self.drain(now);
        if self.connected {
            self.send_due_media(now);
            self.drain(now);
        }
    }

    /// Takes the datagrams to send.
    pub fn take_transmits(&mut self) -> Vec<Transmit> {
        std::mem::take(&mut self.transmits)
    }

    pub fn video(&self) -> Option<&LineStats> {
        self.lines
            .values()
            .find(|(k, _)| *k == MediaKind::Video)
            .map(|(_, s)| s)
    }

    pub fn audio(&self) -> Option<&LineStats> {
        self.lines
            .values()
            .find(|(k, _)| *k == MediaKind::Audio)
            .map(|(_, s)| s)
    }

    /// Closes the connection (DTLS close_notify).
    pub fn close(&mut self, now: Instant) {
        let _ = self.rtc.close();
        self.drain(now);
    }

    fn fail(&mut self, now: Instant) {
        self.disconnected = true;
        self.connected = false;
        self.timeout = now + Duration::from_secs(3600);
    }

    fn drain(&mut self, now: Instant) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(at)) => {
                    self.timeout = at;
                    return;
                }
                Ok(Output::Transmit(transmit)) => self.transmits.push(transmit),
                Ok(Output::Event(event)) => self.event(now, event),
                Err(_) => {
                    self.fail(now);
                    return;
                }
            }
        }
    }

    fn event(&mut self, now: Instant, event: Event) {
        match event {
            Event::Connected => {
                self.connected = true;
                self.learn_send_lines();
                self.next_video_at = Some(now);
                self.next_audio_at = Some(now);
            }
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) | Event::Closed => {
                self.disconnected = true;
            }
            Event::KeyframeRequest(_) => {
                self.keyframe_requests += 1;
                self.keyframe_due = true;
            }
            Event::RtpPacket(packet) => {
                let mid = self
                    .rtc
                    .direct_api()
                    .stream_rx(&packet.header.ssrc)
                    .map(|s| s.mid());
                let Some(mid) = mid else { return };
                let Some((kind, stats)) = self.lines.get_mut(&mid) else {
                    return;
                };
                stats.packets += 1;
                stats.bytes += packet.payload.len() as u64;
                if self.track_sequence {
                    let seq = *packet.seq_no;
                    stats.distinct.insert(seq);
                    stats.lowest_seq = Some(stats.lowest_seq.map_or(seq, |l| l.min(seq)));
                    stats.highest_seq = Some(stats.highest_seq.map_or(seq, |h| h.max(seq)));
                }
                let stamp_at = if *kind == MediaKind::Video { 2 } else { 0 };
                let Some(stamp) = packet.payload.get(stamp_at..stamp_at + STAMP_BYTES) else {
                    return;
                };
                let layer = stamp[0];
                let sent_us = u64::from_be_bytes(stamp[1..9].try_into().expect("8 bytes"));
                let now_us = now.duration_since(self.clock_base).as_micros() as u64;
                let window_start = self
                    .delay_window_start_us
                    .load(std::sync::atomic::Ordering::Relaxed);
                if let Some(delay) = now_us
                    .checked_sub(sent_us)
                    .filter(|_| sent_us >= window_start)
                {
                    self.delays_us.push(delay.min(u64::from(u32::MAX)) as u32);
                }
                if *kind == MediaKind::Video && packet.payload[0] & 0x10 != 0 {
                    let keyframe = packet.payload[1] & 0x01 == 0;
                    stats.first_frame_keyframe.get_or_insert(keyframe);
                    if stats.last_layer.is_some_and(|l| l != layer) {
                        stats.layer_changes_on_keyframe.push(keyframe);
                        stats.frames_since_change = 0;
                    }
                    stats.frames_since_change += 1;
                    stats.last_layer = Some(layer);
                    if let Some(count) = stats.frames_by_layer.get_mut(usize::from(layer)) {
                        *count += 1;
                    }
                }
            }
            _ => {}
        }
    }

    fn learn_send_lines(&mut self) {
        let Role::Publisher { simulcast } = self.role else {
            return;
        };
        let mids = self.own_mids.clone();
        for (mid, kind) in mids {
            let codec = if kind == MediaKind::Audio {
                Codec::Opus
            } else {
                Codec::Vp8
            };
            let Some(pt) = self
                .rtc
                .codec_config()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
            else {
                continue;
            };
            let layers = if kind == MediaKind::Video && simulcast {
                LAYERS
                    .iter()
                    .map(|(rid, _)| (Some(Rid::from(*rid)), 1))
                    .collect()
            } else {
                vec![(None, 1)]
            };
            self.sends.push(SendLine {
                mid,
                kind,
                pt,
                layers,
            });
        }
    }

    fn send_due_media(&mut self, now: Instant) {
        let stamp_us = now.duration_since(self.clock_base).as_micros() as u64;
        if self.next_audio_at.is_some_and(|at| at <= now) {
            self.next_audio_at = Some(now + Duration::from_secs(1) / AUDIO_PPS);
            let time = (stamp_us * 48 / 1000) as u32;
            for line in self.sends.iter_mut().filter(|l| l.kind == MediaKind::Audio) {
                let mut payload = vec![0u8; 120];
                payload[0] = 0;
                payload[1..9].copy_from_slice(&stamp_us.to_be_bytes());
                write(
                    &mut self.rtc,
                    line.mid,
                    None,
                    line.pt,
                    &mut line.layers[0].1,
                    time,
                    now,
                    true,
                    payload,
                );
            }
        }
        if self.next_video_at.is_some_and(|at| at <= now) {
            self.next_video_at = Some(now + Duration::from_secs(1) / VIDEO_FPS);
            let keyframe = std::mem::take(&mut self.keyframe_due) || self.frame_index % 300 == 0;
            self.frame_index += 1;
            let time = (stamp_us * 90 / 1000) as u32;
            for line in self.sends.iter_mut().filter(|l| l.kind == MediaKind::Video) {
                let single = line.layers.len() == 1;
                for (index, (rid, seq)) in line.layers.iter_mut().enumerate() {
                    if !single && self.paused_layers[index] {
                        continue;
                    }
                    let (layer, bitrate) = if single {
                        (1, LAYERS[1].1)
                    } else {
                        (index, LAYERS[index].1)
                    };
                    let frame_bytes = (bitrate / 8 / VIDEO_FPS) as usize;
                    let packets = frame_bytes.div_ceil(PAYLOAD_BYTES_MAX).max(1);
                    for packet in 0..packets {
                        let size = (frame_bytes / packets).max(2 + STAMP_BYTES);
                        let mut payload = vec![0u8; size];
                        // VP8 descriptor: S=1, PID=0 on the first packet of the frame.
                        payload[0] = if packet == 0 { 0x10 } else { 0x00 };
                        // VP8 payload header: P=0 marks a key frame.
                        payload[1] = if keyframe { 0x10 } else { 0x11 };
                        payload[2] = layer as u8;
                        payload[3..11].copy_from_slice(&stamp_us.to_be_bytes());
                        let last = packet + 1 == packets;
                        write(
                            &mut self.rtc,
                            line.mid,
                            *rid,
                            line.pt,
                            seq,
                            time,
                            now,
                            last,
                            payload,
                        );
                    }
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn write(
    rtc: &mut Rtc,
    mid: Mid,
    rid: Option<Rid>,
    pt: Pt,
    seq: &mut u64,
    time: u32,
    now: Instant,
    marker: bool,
    payload: Vec<u8>,
) {
    let mut api = rtc.direct_api();
    let Some(stream) = api.stream_tx_by_mid(mid, rid) else {
        return;
    };
    let seq_no: SeqNo = (*seq).into();
    *seq += 1;
    stream.write_rtp(
        RtpWrite::new(pt, seq_no, time, now, payload)
            .marker(marker)
            .nackable(true),
    );
}

/// Percentile of a set of samples (0–100), or 0 when empty.
pub fn percentile(samples: &mut [u32], percent: u32) -> u32 {
    if samples.is_empty() {
        return 0;
    }
    samples.sort_unstable();
    let index = (samples.len() - 1) * percent as usize / 100;
    samples[index]
}
