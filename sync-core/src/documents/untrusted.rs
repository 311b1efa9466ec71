//! Automerge bytes from outside the device (pulled snapshots and changes, after decryption).
//!
//! Only the account's own devices can seal such bytes, but a bug or a compromised device must not
//! crash every other one: automerge 0.12's decoders can panic on malformed input (fuzzing found
//! an `unwrap` in its column decoder, reached from `load_incremental`). These guards run the
//! decoder where a panic is caught and turned into an error, so the envelope is skipped and
//! reported like any other bad input. Before that, [`super::preflight`] refuses what would make
//! the decoder allocate without bound.

use std::panic::{AssertUnwindSafe, catch_unwind};

use automerge::{AutoCommit, Change, ReadDoc as _};

/// Loads a snapshot (`save()` bytes) into `doc`. The bytes are first decoded into a scratch
/// document, where a decoder panic cannot leave `doc` half-changed; only bytes that load there
/// are loaded into `doc`.
pub fn load_snapshot(doc: &mut AutoCommit, bytes: &[u8]) -> Result<(), String> {
    super::preflight::check_snapshot(bytes)
        .map_err(|reason| format!("the snapshot is refused: {reason}"))?;
    // The scratch document is made like `doc` (text encoding, actor), so that when `doc` is
    // still empty, as for every entry a fresh device downloads, it can simply take its place
    // instead of decoding the bytes a second time.
    let mut scratch =
        AutoCommit::new_with_encoding(doc.text_encoding()).with_actor(doc.get_actor().clone());
    let trial = catch_unwind(AssertUnwindSafe(|| {
        scratch.load_incremental(bytes).map(|_| ())
    }));
    match trial {
        Err(_) => Err("the snapshot is malformed (the decoder failed)".into()),
        Ok(Err(error)) => Err(format!("the snapshot does not load: {error}")),
        Ok(Ok(())) if doc.get_heads().is_empty() => {
            *doc = scratch;
            Ok(())
        }
        Ok(Ok(())) => catch_unwind(AssertUnwindSafe(|| doc.load_incremental(bytes)))
            .map_err(|_| "the snapshot is malformed (the decoder failed)".to_string())?
            .map(|_| ())
            .map_err(|error| format!("the snapshot does not load: {error}")),
    }
}

/// Parses one change's bytes.
pub fn parse_change(bytes: &[u8]) -> Result<Change, String> {
    super::preflight::check_change(bytes)
        .map_err(|reason| format!("malformed change: {reason}"))?;
    catch_unwind(AssertUnwindSafe(|| Change::from_bytes(bytes.to_vec())))
        .map_err(|_| "malformed change (the decoder failed)".to_string())?
        .map_err(|error| format!("malformed change: {error}"))
}

#[cfg(test)]
mod tests {
    use automerge::ROOT;
    use automerge::transaction::Transactable as _;

    use super::*;

    /// Found by `scripts/fuzz` (change_payload): panics inside automerge 0.12's column decoder
    /// (a bundle chunk; the preflight now refuses those before the decoder runs).
    const DECODER_PANIC: [u8; 22] = [
        0x85, 0x6f, 0x4a, 0x83, 0x00, 0x00, 0x6d, 0x00, 0x03, 0x0b, 0x00, 0x00, 0x00, 0x01, 0x23,
        0x03, 0x26, 0x00, 0x00, 0x08, 0x00, 0x00,
    ];

    #[test]
    fn bytes_that_crash_the_decoder_are_an_error_and_leave_the_document_alone() {
        let mut doc = AutoCommit::new();
        doc.put(&ROOT, "kept", "yes").unwrap();
        let heads = doc.get_heads();
        let error = load_snapshot(&mut doc, &DECODER_PANIC).unwrap_err();
        assert!(error.contains("bundle"), "{error}");
        assert_eq!(doc.get_heads(), heads);
        assert!(parse_change(&DECODER_PANIC).is_err());
    }

    #[test]
    fn an_empty_document_takes_the_loaded_one_with_its_own_actor_and_encoding() {
        let mut source = AutoCommit::new();
        source.put(&ROOT, "title", "hello").unwrap();
        let actor = automerge::ActorId::from([7u8; 16]);
        // Not the default, so that a scratch document made without it would show.
        let encoding = automerge::TextEncoding::GraphemeCluster;
        let mut target = AutoCommit::new_with_encoding(encoding).with_actor(actor.clone());
        load_snapshot(&mut target, &source.save()).unwrap();
        assert_eq!(target.get_heads(), source.get_heads());
        assert_eq!(target.get_actor(), &actor);
        assert_eq!(target.text_encoding(), encoding);
        target.put(&ROOT, "more", 1).unwrap();
        let change = target.get_last_local_change().unwrap();
        assert_eq!(change.actor_id(), &actor);
    }

    #[test]
    fn a_real_snapshot_and_change_load() {
        let mut source = AutoCommit::new();
        source.put(&ROOT, "title", "hello").unwrap();
        let change_bytes = source.get_last_local_change().unwrap().raw_bytes().to_vec();
        let mut target = AutoCommit::new();
        load_snapshot(&mut target, &source.save()).unwrap();
        assert_eq!(target.get_heads(), source.get_heads());
        assert_eq!(
            parse_change(&change_bytes).unwrap().hash(),
            source.get_heads()[0]
        );
    }
}
