//! Recognising the first packet of a video keyframe from its RTP payload, so a subscriber starts
//! (or switches simulcast layer) exactly where its decoder can begin.
//!
//! Only the codecs the node negotiates are understood: VP8 (RFC 7741) and H.264 (RFC 6184).
//! Anything unparseable is "not a keyframe": the worst outcome is a short wait for the next one.

/// The codecs whose payloads this module can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    H264,
}

/// True when `payload` starts a keyframe.
pub fn starts_keyframe(codec: VideoCodec, payload: &[u8]) -> bool {
    match codec {
        VideoCodec::Vp8 => vp8_starts_keyframe(payload),
        VideoCodec::H264 => h264_starts_keyframe(payload),
    }
}

fn vp8_starts_keyframe(payload: &[u8]) -> bool {
    // Payload descriptor: |X|R|N|S|R|PID|, then optional extension bytes.
    let Some(&first) = payload.first() else {
        return false;
    };
    let extended = first & 0x80 != 0;
    let start_of_partition = first & 0x10 != 0;
    let partition_index = first & 0x07;
    if !start_of_partition || partition_index != 0 {
        return false;
    }
    let mut offset = 1;
    if extended {
        let Some(&flags) = payload.get(offset) else {
            return false;
        };
        offset += 1;
        if flags & 0x80 != 0 {
            // Picture id: one byte, or two when its M bit is set.
            let Some(&picture_id) = payload.get(offset) else {
                return false;
            };
            offset += if picture_id & 0x80 != 0 { 2 } else { 1 };
        }
        if flags & 0x40 != 0 {
            offset += 1; // TL0PICIDX
        }
        if flags & 0x30 != 0 {
            offset += 1; // TID / KEYIDX
        }
    }
    // VP8 payload header: the P bit (bit 0) is 0 for a key frame.
    payload.get(offset).is_some_and(|header| header & 0x01 == 0)
}

const H264_NAL_IDR: u8 = 5;
const H264_NAL_SPS: u8 = 7;
const H264_NAL_STAP_A: u8 = 24;
const H264_NAL_FU_A: u8 = 28;

fn h264_starts_keyframe(payload: &[u8]) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    let is_key_nal = |nal_type: u8| nal_type == H264_NAL_IDR || nal_type == H264_NAL_SPS;
    match first & 0x1f {
        H264_NAL_STAP_A => {
            // Aggregated NAL units, each prefixed by a 16-bit size.
            let mut rest = &payload[1..];
            while rest.len() > 2 {
                let size = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                let Some(&nal) = rest.get(2) else {
                    return false;
                };
                if is_key_nal(nal & 0x1f) {
                    return true;
                }
                let Some(next) = rest.get(2 + size..) else {
                    return false;
                };
                rest = next;
            }
            false
        }
        H264_NAL_FU_A => {
            // Fragment: the FU header carries the start bit and the real NAL type.
            payload
                .get(1)
                .is_some_and(|header| header & 0x80 != 0 && is_key_nal(header & 0x1f))
        }
        nal_type => is_key_nal(nal_type),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keyframes_are_found_behind_the_descriptor() {
        // X=1, S=1, PID=0; I=1 with a 15-bit picture id; then a key frame header (P=0).
        assert!(starts_keyframe(
            VideoCodec::Vp8,
            &[0x90, 0x80, 0x81, 0x02, 0x10]
        ));
        // Same, but an inter frame (P=1).
        assert!(!starts_keyframe(
            VideoCodec::Vp8,
            &[0x90, 0x80, 0x81, 0x02, 0x11]
        ));
        // Not the start of a partition.
        assert!(!starts_keyframe(
            VideoCodec::Vp8,
            &[0x80, 0x80, 0x81, 0x02, 0x10]
        ));
        // Minimal descriptor, key frame.
        assert!(starts_keyframe(VideoCodec::Vp8, &[0x10, 0x50]));
        // Truncated input is never a keyframe and never panics.
        assert!(!starts_keyframe(VideoCodec::Vp8, &[0x90, 0x80]));
        assert!(!starts_keyframe(VideoCodec::Vp8, &[]));
    }

    #[test]
    fn h264_keyframes_are_found_in_single_aggregated_and_fragmented_units() {
        assert!(starts_keyframe(VideoCodec::H264, &[0x65, 0x00]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x41, 0x00]));
        // STAP-A holding an SPS.
        assert!(starts_keyframe(
            VideoCodec::H264,
            &[0x18, 0x00, 0x02, 0x67, 0x42]
        ));
        // STAP-A with a size that runs past the end.
        assert!(!starts_keyframe(
            VideoCodec::H264,
            &[0x18, 0x00, 0x09, 0x41]
        ));
        // FU-A start of an IDR, and a middle fragment.
        assert!(starts_keyframe(VideoCodec::H264, &[0x7c, 0x85]));
        assert!(!starts_keyframe(VideoCodec::H264, &[0x7c, 0x05]));
    }
}
