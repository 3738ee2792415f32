//! Uploaded class material: what types are accepted (checked by content, not by the name or the
//! header a browser sends), their content address, and slide-deck manifests.
//!
//! A deck is either one PDF (its pages shown by the browser's PDF viewer) or a manifest listing
//! page images in order. Both are assets named by their SHA-256; a `DeckOpened` event names the
//! deck's asset.

use serde::{Deserialize, Serialize};

use multistream_proto::session::DECK_PAGES_MAX;

/// The media type of a deck manifest.
pub const DECK_MANIFEST_TYPE: &str = "application/vnd.multistream.deck+json";

/// Largest deck manifest, in bytes.
pub const DECK_MANIFEST_BYTES_MAX: usize = 64 * 1024;

/// A deck made of page images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeckManifest {
    pub title: String,
    /// The SHA-256 of each page image, in order.
    pub pages: Vec<String>,
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `text` is a content address (64 lowercase hex digits).
pub fn is_address(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The media type of an accepted upload, from its first bytes; `None` for anything else.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else if bytes.first() == Some(&b'{') {
        Some(DECK_MANIFEST_TYPE)
    } else {
        None
    }
}

/// Largest decompressed object stream looked into, in bytes.
const OBJECT_STREAM_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// Pages of a PDF, counted from its page objects (`/Type /Page`, not `/Pages`), including those
/// kept compressed in object streams (PDF 1.5 and later). Good enough for the page buttons; the
/// browser's viewer renders the file itself. `None` when there are none.
pub fn pdf_pages(bytes: &[u8]) -> Option<u32> {
    let mut count = count_page_dictionaries(bytes);
    let mut index = 0;
    while let Some(found) = find(&bytes[index..], b"/ObjStm") {
        let at = index + found;
        index = at + 7;
        let Some(data) = stream_after(bytes, at) else {
            continue;
        };
        let mut inflated = Vec::new();
        let reader = flate2::read::ZlibDecoder::new(data);
        if std::io::Read::read_to_end(
            &mut std::io::Read::take(reader, OBJECT_STREAM_BYTES_MAX),
            &mut inflated,
        )
        .is_ok()
        {
            count += count_page_dictionaries(&inflated);
        }
    }
    (count > 0).then_some(count.min(DECK_PAGES_MAX))
}

/// The raw data of the stream whose dictionary contains position `at`.
fn stream_after(bytes: &[u8], at: usize) -> Option<&[u8]> {
    let keyword = at + find(&bytes[at..], b"stream")?;
    let mut start = keyword + b"stream".len();
    if bytes.get(start) == Some(&b'\r') {
        start += 1;
    }
    if bytes.get(start) == Some(&b'\n') {
        start += 1;
    }
    let end = start + find(bytes.get(start..)?, b"endstream")?;
    bytes.get(start..end)
}

fn count_page_dictionaries(bytes: &[u8]) -> u32 {
    let mut count = 0u32;
    let needle = b"/Type";
    let mut index = 0;
    while let Some(found) = find(&bytes[index..], needle) {
        let mut at = index + found + needle.len();
        while bytes.get(at).is_some_and(|b| b.is_ascii_whitespace()) {
            at += 1;
        }
        if bytes[at..].starts_with(b"/Page") && !bytes[at..].starts_with(b"/Pages") {
            count += 1;
        }
        index = at;
    }
    count
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Why a manifest is not a deck.
pub fn parse_manifest(bytes: &[u8]) -> Result<DeckManifest, String> {
    if bytes.len() > DECK_MANIFEST_BYTES_MAX {
        return Err(format!(
            "a deck manifest is at most {DECK_MANIFEST_BYTES_MAX} bytes"
        ));
    }
    let manifest: DeckManifest =
        serde_json::from_slice(bytes).map_err(|e| format!("not a deck manifest: {e}"))?;
    if manifest.pages.is_empty() || manifest.pages.len() > DECK_PAGES_MAX as usize {
        return Err(format!("a deck has 1 to {DECK_PAGES_MAX} pages"));
    }
    if let Some(bad) = manifest.pages.iter().find(|p| !is_address(p)) {
        return Err(format!(
            "{bad:?} is not an asset address (64 lowercase hex digits)"
        ));
    }
    if manifest.title.chars().count() > 200 {
        return Err("a deck title is at most 200 characters".into());
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_recognised_by_content() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff(&[0xff, 0xd8, 0xff, 0xe0]), Some("image/jpeg"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"%PDF-1.7\n"), Some("application/pdf"));
        assert_eq!(sniff(b"<svg onload=alert(1)>"), None);
        assert_eq!(sniff(b"MZ\x90\0"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn pdf_pages_are_counted_and_manifests_checked() {
        let pdf = b"%PDF-1.4\n1 0 obj << /Type /Pages /Count 2 >>\n2 0 obj << /Type /Page >>\n3 0 obj <</Type/Page>>";
        assert_eq!(pdf_pages(pdf), Some(2));
        // Pages kept in a compressed object stream (PDF 1.5+).
        let mut packed =
            flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(
            &mut packed,
            b"<</Type /Page>> <</Type/Page>> <</Type /Pages>>",
        )
        .expect("compresses");
        let packed = packed.finish().expect("compresses");
        let mut modern =
            b"%PDF-1.7\n5 0 obj <</Type /ObjStm /N 3 /Filter /FlateDecode>>\nstream\n".to_vec();
        modern.extend_from_slice(&packed);
        modern.extend_from_slice(b"\nendstream\nendobj\n");
        assert_eq!(pdf_pages(&modern), Some(2));
        assert_eq!(pdf_pages(b"%PDF-1.4 nothing"), None);
        let page = "a".repeat(64);
        let good = format!(r#"{{"title":"Week 1","pages":["{page}","{page}"]}}"#);
        assert_eq!(
            parse_manifest(good.as_bytes()).expect("valid").pages.len(),
            2
        );
        assert!(parse_manifest(br#"{"title":"x","pages":[]}"#).is_err());
        assert!(parse_manifest(br#"{"title":"x","pages":["../etc/passwd"]}"#).is_err());
        assert!(parse_manifest(br#"{"title":"x","pages":["a"],"extra":1}"#).is_err());
        assert_eq!(sha256_hex(b"abc").len(), 64);
        assert!(is_address(&sha256_hex(b"abc")));
    }
}
