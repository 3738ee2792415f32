//! What relayed media and relay control look like between edges: the binary datagram of one
//! RTP packet, and the control messages on a link's ordered stream. Pure; everything read from
//! another edge is checked, and a bad datagram or message is a typed error, never a panic.

use multistream_proto::{ParticipantId, Role, SessionId, Source};
use serde::{Deserialize, Serialize};
use str0m::format::PayloadParams;
use str0m::media::MediaKind;

use super::{RelayMessage, TrackKind};
use crate::log::NodeId;

/// Bytes before the packet in a datagram: the channel (4) and the layer (1).
pub const DATAGRAM_HEADER_BYTES: usize = 5;

/// Bytes of the packet description before its payload.
pub const PACKET_HEADER_BYTES: usize = 22;

/// Largest RTP payload relayed; a browser's packets stay well under it.
pub const PAYLOAD_BYTES_MAX: usize = 1_400;

/// Largest control message on a link, encoded.
pub const CONTROL_MESSAGE_BYTES_MAX: usize = 512 * 1024;

/// Publishers one catalog lists, at most.
pub const CATALOG_PUBLISHERS_MAX: usize = 1_024;

/// Codecs listed for one origin, at most.
pub const CATALOG_CODECS_MAX: usize = 64;

/// Media lines one announced publisher has, at most.
pub const ANNOUNCED_TRACKS_MAX: usize = 8;

/// One RTP packet of a relayed track, as it crosses between edges. The codec travels as the
/// origin's payload type; the importer maps it through the origin's codec table, which the
/// catalog carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WirePacket {
    /// Index of the publisher's media line and simulcast layer.
    pub track: u8,
    pub layer: u8,
    pub kind: TrackKind,
    pub pt: u8,
    pub ssrc: u32,
    pub seq: u64,
    pub rtp_time: u32,
    pub marker: bool,
    pub keyframe: bool,
    pub audio_level: Option<i8>,
    pub voice_activity: Option<bool>,
}

const MARKER: u8 = 1;
const KEYFRAME: u8 = 2;
const AUDIO_LEVEL: u8 = 4;
const VOICE_KNOWN: u8 = 8;
const VOICE: u8 = 16;

/// Why bytes from another edge were not a relayed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("the datagram is shorter than its header")]
    Short,
    #[error("the packet's media kind is not audio or video")]
    Kind,
    #[error("the payload is longer than {PAYLOAD_BYTES_MAX} bytes")]
    TooLong,
}

impl WirePacket {
    /// The packet description followed by the payload (the part the relay core passes on
    /// unchanged).
    pub fn encode(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(PACKET_HEADER_BYTES + payload.len());
        let mut flags = 0;
        if self.marker {
            flags |= MARKER;
        }
        if self.keyframe {
            flags |= KEYFRAME;
        }
        if self.audio_level.is_some() {
            flags |= AUDIO_LEVEL;
        }
        if let Some(voice) = self.voice_activity {
            flags |= VOICE_KNOWN;
            if voice {
                flags |= VOICE;
            }
        }
        out.push(self.track);
        out.push(self.layer);
        out.push(match self.kind {
            TrackKind::Audio => 0,
            TrackKind::Video => 1,
        });
        out.push(flags);
        out.push(self.pt);
        out.extend_from_slice(&self.audio_level.unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.rtp_time.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Reads a packet description; returns it and the payload.
    pub fn decode(bytes: &[u8]) -> Result<(WirePacket, &[u8]), WireError> {
        if bytes.len() < PACKET_HEADER_BYTES {
            return Err(WireError::Short);
        }
        let (head, payload) = bytes.split_at(PACKET_HEADER_BYTES);
        if payload.len() > PAYLOAD_BYTES_MAX {
            return Err(WireError::TooLong);
        }
        let kind = match head[2] {
            0 => TrackKind::Audio,
            1 => TrackKind::Video,
            _ => return Err(WireError::Kind),
        };
        let flags = head[3];
        let be32 =
            |at: usize| u32::from_be_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&head[10..18]);
        Ok((
            WirePacket {
                track: head[0],
                layer: head[1],
                kind,
                pt: head[4],
                audio_level: (flags & AUDIO_LEVEL != 0).then(|| i8::from_be_bytes([head[5]])),
                ssrc: be32(6),
                seq: u64::from_be_bytes(seq),
                rtp_time: be32(18),
                marker: flags & MARKER != 0,
                keyframe: flags & KEYFRAME != 0,
                voice_activity: (flags & VOICE_KNOWN != 0).then_some(flags & VOICE != 0),
            },
            payload,
        ))
    }
}

/// A datagram on a link: the channel, the layer, then the packet as [`WirePacket::encode`]
/// wrote it.
pub fn encode_datagram(channel: u32, layer: u8, packet: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DATAGRAM_HEADER_BYTES + packet.len());
    out.extend_from_slice(&channel.to_be_bytes());
    out.push(layer);
    out.extend_from_slice(packet);
    out
}

/// Splits a datagram into its channel, layer and packet.
pub fn decode_datagram(bytes: &[u8]) -> Result<(u32, u8, &[u8]), WireError> {
    if bytes.len() < DATAGRAM_HEADER_BYTES + PACKET_HEADER_BYTES {
        return Err(WireError::Short);
    }
    let channel = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    Ok((channel, bytes[4], &bytes[DATAGRAM_HEADER_BYTES..]))
}

/// A media line of an announced publisher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnouncedTrack {
    pub kind: TrackKind,
    /// Simulcast layers (1 without simulcast).
    pub layers: u8,
    /// Each layer's bitrate at the origin, bits per second (0: not sent now), so an edge can
    /// choose a layer before it imports it.
    #[serde(default)]
    pub rates: Vec<u64>,
}

impl AnnouncedTrack {
    pub fn media_kind(&self) -> MediaKind {
        match self.kind {
            TrackKind::Audio => MediaKind::Audio,
            TrackKind::Video => MediaKind::Video,
        }
    }
}

/// A publisher some edge of the cluster serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announced {
    pub session: SessionId,
    pub participant: ParticipantId,
    /// Their name and role, for the roster of the edges that relay them.
    pub name: String,
    pub role: Role,
    pub source: Source,
    /// It leads the class (a teacher): subscribers prefer it.
    pub lead: bool,
    pub tracks: Vec<AnnouncedTrack>,
    /// The edge it is connected to.
    pub origin: NodeId,
    /// The edges between the sender of the catalog and the origin, nearest first (empty: the
    /// sender is the origin or its neighbour).
    #[serde(default)]
    pub via: Vec<NodeId>,
    /// Its codec table as negotiated with its browser (payload type → codec).
    pub codecs: Vec<PayloadParams>,
}

/// The publishers an edge can relay: its own, and those it hears of from its peers (so a
/// chain can form where two edges have no link). Sent to every peer every
/// [`super::REFRESH_INTERVAL`] and whenever it changes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub publishers: Vec<Announced>,
}

/// A control message on a link's ordered stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LinkMessage {
    Relay {
        message: RelayMessage,
    },
    Catalog {
        catalog: Catalog,
    },
    /// The sender's name, address, campus networks and load, for placing participants.
    Edge {
        report: crate::placement::EdgeReport,
    },
}

/// Why a control message was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("the message is longer than {CONTROL_MESSAGE_BYTES_MAX} bytes")]
    TooLong,
    #[error("the message is not valid: {0}")]
    Malformed(String),
    #[error("the catalog lists more than {CATALOG_PUBLISHERS_MAX} publishers")]
    CatalogTooLarge,
    #[error("an announced publisher is not valid: {0}")]
    BadPublisher(String),
}

impl LinkMessage {
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain data to JSON cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a control message and checks its limits.
    pub fn decode(bytes: &[u8]) -> Result<LinkMessage, ControlError> {
        if bytes.len() > CONTROL_MESSAGE_BYTES_MAX {
            return Err(ControlError::TooLong);
        }
        let message: LinkMessage = serde_json::from_slice(bytes)
            .map_err(|error| ControlError::Malformed(error.to_string()))?;
        if let LinkMessage::Edge { report } = &message
            && (report.networks.len() > crate::placement::PREFIXES_PER_EDGE_MAX
                || report.name.len() > 200
                || report.url.len() > 2_000)
        {
            return Err(ControlError::Malformed(
                "the edge report is over its limits".into(),
            ));
        }
        if let LinkMessage::Catalog { catalog } = &message {
            if catalog.publishers.len() > CATALOG_PUBLISHERS_MAX {
                return Err(ControlError::CatalogTooLarge);
            }
            for publisher in &catalog.publishers {
                if multistream_proto::claims::validate_display_name(&publisher.name)
                    .map_err(|error| ControlError::BadPublisher(error.to_string()))?
                    != publisher.name
                {
                    return Err(ControlError::BadPublisher(
                        "a name with surrounding spaces".into(),
                    ));
                }
                if publisher.tracks.is_empty() || publisher.tracks.len() > ANNOUNCED_TRACKS_MAX {
                    return Err(ControlError::BadPublisher(format!(
                        "{} has {} media lines",
                        publisher.participant,
                        publisher.tracks.len()
                    )));
                }
                if publisher
                    .tracks
                    .iter()
                    .any(|t| t.rates.len() > usize::from(super::LAYER_MAX) + 1)
                {
                    return Err(ControlError::BadPublisher(format!(
                        "{} announces more layers than there can be",
                        publisher.participant
                    )));
                }
                if publisher.codecs.len() > CATALOG_CODECS_MAX {
                    return Err(ControlError::BadPublisher(format!(
                        "{} lists {} codecs",
                        publisher.participant,
                        publisher.codecs.len()
                    )));
                }
                if publisher.via.len() >= super::RELAY_HOPS_MAX {
                    return Err(ControlError::BadPublisher(format!(
                        "{} is announced through {} edges",
                        publisher.participant,
                        publisher.via.len()
                    )));
                }
            }
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet() -> WirePacket {
        WirePacket {
            track: 1,
            layer: 2,
            kind: TrackKind::Video,
            pt: 96,
            ssrc: 0xDEAD_BEEF,
            seq: 70_000,
            rtp_time: 123_456_789,
            marker: true,
            keyframe: true,
            audio_level: None,
            voice_activity: Some(false),
        }
    }

    #[test]
    fn a_packet_survives_the_wire() {
        let body = packet().encode(b"payload");
        let datagram = encode_datagram(7, 2, &body);
        let (channel, layer, rest) = decode_datagram(&datagram).expect("datagram");
        assert_eq!((channel, layer), (7, 2));
        let (decoded, payload) = WirePacket::decode(rest).expect("packet");
        assert_eq!(decoded, packet());
        assert_eq!(payload, b"payload");
        let audio = WirePacket {
            kind: TrackKind::Audio,
            audio_level: Some(-30),
            voice_activity: Some(true),
            marker: false,
            keyframe: false,
            ..packet()
        };
        let (decoded, _) = WirePacket::decode(&audio.encode(&[])).expect("audio packet");
        assert_eq!(decoded, audio);
    }

    #[test]
    fn bad_bytes_are_errors() {
        assert_eq!(decode_datagram(&[0; 10]), Err(WireError::Short));
        let mut body = packet().encode(b"x");
        body[2] = 9;
        assert_eq!(WirePacket::decode(&body), Err(WireError::Kind));
        let long = packet().encode(&[0; PAYLOAD_BYTES_MAX + 1]);
        assert_eq!(WirePacket::decode(&long), Err(WireError::TooLong));
        assert!(matches!(
            LinkMessage::decode(b"{\"kind\":\"catalog\"}"),
            Err(ControlError::Malformed(_))
        ));
        assert!(matches!(
            LinkMessage::decode(&vec![b' '; CONTROL_MESSAGE_BYTES_MAX + 1]),
            Err(ControlError::TooLong)
        ));
        let publisher = Announced {
            session: "s1".parse().expect("session"),
            participant: "p1".parse().expect("participant"),
            name: "Ana".into(),
            role: Role::Teacher,
            source: Source::Camera,
            lead: true,
            tracks: Vec::new(),
            origin: NodeId("a".into()),
            via: Vec::new(),
            codecs: Vec::new(),
        };
        let message = LinkMessage::Catalog {
            catalog: Catalog {
                publishers: vec![publisher],
            },
        };
        assert!(matches!(
            LinkMessage::decode(&message.encode()),
            Err(ControlError::BadPublisher(_))
        ));
    }
}
