//! A bounded look at Automerge's binary format before its decoder sees bytes from outside.
//!
//! automerge 0.12's decoders trust the sizes written in the bytes. Fuzzing found a run length
//! in a *bundle* chunk that makes it collect gigabytes from a hundred bytes, and DEFLATE data
//! (compressed change chunks, compressed document columns) is inflated with no limit, so a small
//! payload can take all of a phone's memory and crash the app on every sync. Haven never writes
//! bundle chunks, so they are refused here; every compressed part is inflated into a sink with a
//! cap on the total before the decoder inflates it for real.
//!
//! Format (automerge's binary spec): a chunk is `85 6f 4a 83`, a 4-byte checksum, a type byte
//! (0 document, 1 change, 2 compressed change, 3 bundle), a LEB128 length and that many bytes. A
//! document chunk starts with its actors, heads and two column tables of (spec, length); bit 3 of
//! a spec marks a DEFLATE column. The change and then the operation columns follow.

use std::io::Read as _;

/// The most bytes one payload may inflate to. Envelope bodies are at most 4 MiB; text this size
/// deflates by far less than 16×.
pub(crate) const MAX_INFLATED_BYTES: u64 = 64 * 1024 * 1024;

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const DEFLATE_BIT: u64 = 0b1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkKind {
    Document,
    Change,
    CompressedChange,
}

/// Checks bytes meant for `load_incremental`: document and change chunks only, compressed parts
/// within [`MAX_INFLATED_BYTES`].
pub(crate) fn check_snapshot(bytes: &[u8]) -> Result<(), String> {
    let mut budget = MAX_INFLATED_BYTES;
    let mut rest = bytes;
    while !rest.is_empty() {
        let (kind, data) = next_chunk(&mut rest)?;
        check_chunk(kind, data, &mut budget)?;
    }
    Ok(())
}

/// Checks bytes meant for `Change::from_bytes`: exactly one change chunk, compressed or not.
pub(crate) fn check_change(bytes: &[u8]) -> Result<(), String> {
    let mut rest = bytes;
    let (kind, data) = next_chunk(&mut rest)?;
    if !rest.is_empty() {
        return Err("bytes after the change".into());
    }
    if kind == ChunkKind::Document {
        return Err("a document where a change was expected".into());
    }
    let mut budget = MAX_INFLATED_BYTES;
    check_chunk(kind, data, &mut budget)
}

fn check_chunk(kind: ChunkKind, data: &[u8], budget: &mut u64) -> Result<(), String> {
    match kind {
        ChunkKind::Change => Ok(()),
        ChunkKind::CompressedChange => inflate_within(data, budget),
        ChunkKind::Document => check_document_columns(data, budget),
    }
}

fn next_chunk<'a>(rest: &mut &'a [u8]) -> Result<(ChunkKind, &'a [u8]), String> {
    if take(rest, 4)? != MAGIC {
        return Err("not an Automerge chunk".into());
    }
    take(rest, 4)?; // checksum: the decoder verifies it
    let kind = match take(rest, 1)?[0] {
        0 => ChunkKind::Document,
        1 => ChunkKind::Change,
        2 => ChunkKind::CompressedChange,
        3 => return Err("bundle chunks are not accepted".into()),
        other => return Err(format!("unknown chunk type {other}")),
    };
    let len = leb128(rest)?;
    Ok((kind, take(rest, len)?))
}

/// Walks a document chunk's header to its column tables and inflates every DEFLATE column.
fn check_document_columns(data: &[u8], budget: &mut u64) -> Result<(), String> {
    let mut rest = data;
    let actors = leb128(&mut rest)?;
    for _ in 0..actors {
        let len = leb128(&mut rest)?;
        take(&mut rest, len)?;
    }
    let heads = leb128(&mut rest)?;
    for _ in 0..heads {
        take(&mut rest, 32)?;
    }
    let change_columns = column_table(&mut rest)?;
    let op_columns = column_table(&mut rest)?;
    for table in [change_columns, op_columns] {
        let total = table
            .iter()
            .try_fold(0u64, |sum, (_, len)| sum.checked_add(*len))
            .ok_or("column lengths overflow")?;
        let mut region = take(&mut rest, total)?;
        for (spec, len) in table {
            let column = take(&mut region, len)?;
            if spec & DEFLATE_BIT != 0 {
                inflate_within(column, budget)?;
            }
        }
    }
    Ok(())
}

/// A column table: a count, then (spec, length) pairs.
fn column_table(rest: &mut &[u8]) -> Result<Vec<(u64, u64)>, String> {
    let count = leb128(rest)?;
    let mut table = Vec::new();
    for _ in 0..count {
        let spec = leb128(rest)?;
        if spec > u64::from(u32::MAX) {
            return Err("column spec out of range".into());
        }
        table.push((spec, leb128(rest)?));
    }
    Ok(table)
}

/// Inflates `data` into a sink, failing once the total passes what is left of `budget`.
fn inflate_within(data: &[u8], budget: &mut u64) -> Result<(), String> {
    let mut inflater = flate2::read::DeflateDecoder::new(data).take(budget.saturating_add(1));
    let inflated = std::io::copy(&mut inflater, &mut std::io::sink())
        .map_err(|_| "compressed data does not inflate".to_string())?;
    if inflated > *budget {
        return Err(format!(
            "compressed data inflates past {MAX_INFLATED_BYTES} bytes"
        ));
    }
    *budget -= inflated;
    Ok(())
}

fn take<'a>(rest: &mut &'a [u8], len: u64) -> Result<&'a [u8], String> {
    let len = usize::try_from(len).map_err(|_| "length out of range".to_string())?;
    if rest.len() < len {
        return Err("truncated".into());
    }
    let (head, tail) = rest.split_at(len);
    *rest = tail;
    Ok(head)
}

fn leb128(rest: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = take(rest, 1)?[0];
        let bits = u64::from(byte & 0x7f);
        if shift == 63 && bits > 1 {
            return Err("LEB128 overflow".into());
        }
        value |= bits << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("LEB128 overflow".into())
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use automerge::transaction::Transactable as _;
    use automerge::{AutoCommit, ROOT};

    use super::*;

    /// Found by `scripts/fuzz` (change_payload) in CI: a bundle chunk whose run length makes
    /// automerge 0.12 collect 2 GiB.
    const BUNDLE_RUN_BOMB: &str = "hW9KgwAAMwADSwAAAAEjKgMAbyAgICAgICAgIFkgICAgICAgICAgICAgICAgICAg//////////8gICAgICAgICAgICAgICAgICAgyAAAMwAAMwvHOvf8";

    fn big_document() -> AutoCommit {
        let mut doc = AutoCommit::new();
        let text: String = "a careful sentence, written twice. ".repeat(400);
        doc.put(&ROOT, "body", text).unwrap();
        doc.put(&ROOT, "title", "kept").unwrap();
        doc
    }

    #[test]
    fn real_documents_and_changes_pass() {
        let mut doc = big_document();
        check_snapshot(&doc.save()).unwrap();
        check_snapshot(&doc.save_nocompress()).unwrap();
        check_snapshot(&[]).unwrap();
        let mut saved = doc.save();
        doc.put(&ROOT, "later", 1).unwrap();
        saved.extend(doc.save_incremental());
        check_snapshot(&saved).unwrap();
        for change in doc.get_changes(&[]) {
            check_change(change.raw_bytes()).unwrap();
            let mut change = change.clone();
            check_change(&change.bytes()).unwrap();
        }
    }

    #[test]
    fn the_bundle_found_by_fuzzing_is_refused_before_the_decoder() {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(BUNDLE_RUN_BOMB)
            .unwrap();
        let error = check_snapshot(&bytes).unwrap_err();
        assert!(error.contains("bundle"), "{error}");
        assert!(check_change(&bytes).is_err());
    }

    #[test]
    fn a_deflate_bomb_is_refused() {
        // 128 MiB of zeros deflates to ~130 KB: framed as a compressed change chunk.
        let mut deflater =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1024 * 1024];
        for _ in 0..128 {
            deflater.write_all(&zeros).unwrap();
        }
        let compressed = deflater.finish().unwrap();
        let mut chunk = MAGIC.to_vec();
        chunk.extend([0, 0, 0, 0, 2]);
        let mut len = compressed.len() as u64;
        loop {
            let byte = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                chunk.push(byte);
                break;
            }
            chunk.push(byte | 0x80);
        }
        chunk.extend(&compressed);
        let error = check_change(&chunk).unwrap_err();
        assert!(error.contains("inflates past"), "{error}");
        let error = check_snapshot(&chunk).unwrap_err();
        assert!(error.contains("inflates past"), "{error}");
    }

    #[test]
    fn truncated_and_foreign_bytes_are_refused() {
        let saved = big_document().save();
        for cut in [1, 4, 9, 10, saved.len() / 2, saved.len() - 1] {
            assert!(check_snapshot(&saved[..cut]).is_err(), "cut at {cut}");
        }
        assert!(check_snapshot(b"not automerge at all").is_err());
        assert!(check_change(&saved).is_err(), "a document is not a change");
        let mut unknown = saved;
        unknown[8] = 9;
        assert!(check_snapshot(&unknown).is_err());
    }
}
