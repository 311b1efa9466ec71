//! Reading state: a per-account singleton of article bookmarks and reading progress.
//!
//! Layout (root map; both collections come from the genesis change):
//!
//! | key | Automerge type | meaning |
//! |---|---|---|
//! | `schema`, `type` | uint, str | 1, `reading_state` |
//! | `bookmarks` | map: article slug → timestamp | bookmarked articles → `saved_at` (ms) |
//! | `progress` | map: article slug → map | how far each article was read |
//! | `progress.<slug>` | map {`fraction`: uint, `position`: uint, `updated_at`: timestamp} | |
//!
//! **Fraction as a scaled integer.** `fraction` is parts per million ([`PROGRESS_SCALE`]) rather
//! than an `f64`: an integer is exact and totally ordered, so it compares equal on every device,
//! has no NaN, infinities or negative zero for a malformed document to carry, and lets an
//! unchanged value be skipped instead of rewritten. A millionth is far finer than any screen.
//!
//! **Progress is written whole.** Each update writes a fresh map for the article, so fraction,
//! position and time always come from the same update. Two devices updating the same article
//! concurrently leave two maps (an Automerge conflict); reading takes the one with the latest
//! `updated_at` (ties: Automerge's winner, the same on every device), and the next update
//! resolves the conflict.

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::{ChangeHash, ObjId, ObjType, ROOT, ReadDoc};

use super::fields::{self, Issues, MapReader};
use super::{DocHandle, DocType, Document, DocumentError, SingletonDocument};

/// Bookmarks and reading progress, as plain data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadingState {
    /// Article slug → when it was bookmarked (Unix ms; after concurrent bookmarks, the earliest).
    pub bookmarks: BTreeMap<String, i64>,
    /// Article slug → how far it was read.
    pub progress: BTreeMap<String, ReadingProgress>,
}

/// How far an article was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadingProgress {
    /// 0 ..= [`PROGRESS_SCALE`]: the share of the article read, in parts per million.
    pub fraction: u32,
    /// Where the reader was: an offset into the article body in Unicode scalar values.
    pub position: u64,
    /// When this progress was recorded (Unix ms).
    pub updated_at: i64,
}

/// The `fraction` of a finished article: progress is in parts per million.
pub const PROGRESS_SCALE: u32 = 1_000_000;

const BOOKMARKS: &str = "bookmarks";
const PROGRESS: &str = "progress";
const FRACTION: &str = "fraction";
const POSITION: &str = "position";
const UPDATED_AT: &str = "updated_at";

/// Reading state open for editing.
pub type ReadingStateDoc = DocHandle<ReadingState>;

impl ReadingProgress {
    /// Progress from a fraction in 0.0 ..= 1.0 (clamped; NaN is refused), rounded to the
    /// nearest millionth.
    pub fn from_fraction(
        fraction: f64,
        position: u64,
        updated_at: i64,
    ) -> Result<Self, DocumentError> {
        if fraction.is_nan() {
            return Err(DocumentError::Invalid {
                field: FRACTION.to_owned(),
                reason: "not a number".to_owned(),
            });
        }
        let scaled = (fraction.clamp(0.0, 1.0) * f64::from(PROGRESS_SCALE)).round();
        // In 0 ..= PROGRESS_SCALE after the clamp, so the conversion is exact.
        let fraction = scaled as u32;
        Ok(Self {
            fraction: fraction.min(PROGRESS_SCALE),
            position,
            updated_at,
        })
    }

    /// The fraction read, 0.0 ..= 1.0.
    pub fn as_f64(&self) -> f64 {
        f64::from(self.fraction) / f64::from(PROGRESS_SCALE)
    }

    fn hydrate<D: ReadDoc>(map: &MapReader<'_, D>) -> Result<Self, DocumentError> {
        let fraction = map.u32(FRACTION)?;
        if fraction > PROGRESS_SCALE {
            return Err(DocumentError::Invalid {
                field: map.field(FRACTION),
                reason: format!("above {PROGRESS_SCALE}"),
            });
        }
        Ok(Self {
            fraction,
            position: map.u64(POSITION)?,
            updated_at: map.timestamp(UPDATED_AT)?,
        })
    }
}

impl ReadingState {
    /// Reads, skipping (and returning) malformed items instead of failing on the first one.
    pub fn hydrate_lossy<D: ReadDoc>(doc: &D) -> Result<(Self, Vec<DocumentError>), DocumentError> {
        read(doc, Issues::new(true))
    }
}

impl SingletonDocument for ReadingState {
    const ROOT_COLLECTIONS: &'static [&'static str] = &[BOOKMARKS, PROGRESS];
}

impl Document for ReadingState {
    const TYPE: DocType = DocType::ReadingState;

    fn hydrate<D: ReadDoc>(doc: &D) -> Result<Self, DocumentError> {
        read(doc, Issues::new(false)).map(|(state, _)| state)
    }

    fn reconcile<T: Transactable>(&self, tx: &mut T) -> Result<(), DocumentError> {
        fields::write_header(tx, Self::TYPE)?;
        let bookmarks = fields::ensure_map(tx, &ROOT, BOOKMARKS)?;
        fields::retain_keys(tx, &bookmarks, |key| self.bookmarks.contains_key(key))?;
        for (slug, saved_at) in &self.bookmarks {
            fields::put_timestamp(tx, &bookmarks, slug, *saved_at)?;
        }
        let progress = fields::ensure_map(tx, &ROOT, PROGRESS)?;
        fields::retain_keys(tx, &progress, |key| self.progress.contains_key(key))?;
        for (slug, value) in &self.progress {
            write_progress(tx, &progress, slug, value)?;
        }
        Ok(())
    }
}

fn read<D: ReadDoc>(
    doc: &D,
    mut issues: Issues,
) -> Result<(ReadingState, Vec<DocumentError>), DocumentError> {
    let root = MapReader::root(doc);
    fields::check_header(&root, DocType::ReadingState)?;
    let mut bookmarks = BTreeMap::new();
    if let Some(map) = issues.take(root.map(BOOKMARKS))? {
        for slug in map.keys() {
            let item = check_slug_key(&map, &slug).and_then(|()| map.earliest_timestamp(&slug));
            if let Some(saved_at) = issues.take(item)? {
                bookmarks.insert(slug, saved_at);
            }
        }
    }
    let mut progress = BTreeMap::new();
    if let Some(map) = issues.take(root.map(PROGRESS))? {
        for slug in map.keys() {
            let item = check_slug_key(&map, &slug).and_then(|()| resolve_progress(&map, &slug));
            if let Some(value) = issues.take(item)? {
                progress.insert(slug, value);
            }
        }
    }
    Ok((
        ReadingState {
            bookmarks,
            progress,
        },
        issues.into_found(),
    ))
}

fn check_slug_key<D: ReadDoc>(map: &MapReader<'_, D>, key: &str) -> Result<(), DocumentError> {
    if fields::is_slug(key) {
        Ok(())
    } else {
        Err(DocumentError::Invalid {
            field: map.field(key),
            reason: "key is not an article slug".to_owned(),
        })
    }
}

/// The progress under `slug`: of concurrent updates, the latest; ties go to the later value in
/// Automerge's conflict order (its winner), which is the same on every device.
fn resolve_progress<D: ReadDoc>(
    map: &MapReader<'_, D>,
    slug: &str,
) -> Result<ReadingProgress, DocumentError> {
    let values = map
        .maps_all(slug)?
        .iter()
        .map(ReadingProgress::hydrate)
        .collect::<Result<Vec<_>, _>>()?;
    values
        .into_iter()
        .max_by_key(|value| value.updated_at)
        .ok_or_else(|| DocumentError::Missing {
            field: map.field(slug),
        })
}

/// Writes `value` under `slug` as a fresh map, unless exactly that value is there already with no
/// conflict.
fn write_progress<T: Transactable>(
    tx: &mut T,
    progress: &ObjId,
    slug: &str,
    value: &ReadingProgress,
) -> Result<(), DocumentError> {
    let conflicts = tx.get_all(progress, slug)?.len();
    if conflicts == 1 {
        let reader = MapReader::at(&*tx, progress.clone(), PROGRESS);
        if resolve_progress(&reader, slug).ok().as_ref() == Some(value) {
            return Ok(());
        }
    }
    let map = tx.put_object(progress, slug, ObjType::Map)?;
    fields::put_u64(tx, &map, FRACTION, u64::from(value.fraction))?;
    fields::put_u64(tx, &map, POSITION, value.position)?;
    fields::put_timestamp(tx, &map, UPDATED_AT, value.updated_at)?;
    Ok(())
}

fn check_slug(field: &str, slug: &str) -> Result<(), DocumentError> {
    if fields::is_slug(slug) {
        Ok(())
    } else {
        Err(DocumentError::Invalid {
            field: field.to_owned(),
            reason: "not an article slug ([a-z0-9-], 1 to 100 characters)".to_owned(),
        })
    }
}

impl DocHandle<ReadingState> {
    /// Bookmarks an article; bookmarking a bookmarked article changes nothing.
    pub fn add_bookmark(
        &mut self,
        slug: &str,
        now_ms: i64,
    ) -> Result<Option<ChangeHash>, DocumentError> {
        check_slug(BOOKMARKS, slug)?;
        self.edit(now_ms, "bookmarks.add", |doc| {
            let bookmarks = MapReader::root(&*doc).map(BOOKMARKS)?.id().clone();
            if doc.get(&bookmarks, slug)?.is_none() {
                fields::put_timestamp(doc, &bookmarks, slug, now_ms)?;
            }
            Ok(())
        })
    }

    /// Removes a bookmark; removing a missing one changes nothing.
    pub fn remove_bookmark(
        &mut self,
        slug: &str,
        now_ms: i64,
    ) -> Result<Option<ChangeHash>, DocumentError> {
        self.edit(now_ms, "bookmarks.remove", |doc| {
            let bookmarks = MapReader::root(&*doc).map(BOOKMARKS)?.id().clone();
            if doc.get(&bookmarks, slug)?.is_some() {
                doc.delete(&bookmarks, slug)?;
            }
            Ok(())
        })
    }

    /// Records how far an article was read, at `now_ms`. `fraction` is in parts per million
    /// (at most [`PROGRESS_SCALE`]); `position` is an offset into the body in Unicode scalar
    /// values. Recording the progress already recorded changes nothing.
    pub fn set_progress(
        &mut self,
        slug: &str,
        fraction: u32,
        position: u64,
        now_ms: i64,
    ) -> Result<Option<ChangeHash>, DocumentError> {
        check_slug(PROGRESS, slug)?;
        if fraction > PROGRESS_SCALE {
            return Err(DocumentError::Invalid {
                field: format!("{PROGRESS}.{slug}.{FRACTION}"),
                reason: format!("above {PROGRESS_SCALE}"),
            });
        }
        self.edit(now_ms, "progress.set", |doc| {
            let progress = MapReader::root(&*doc).map(PROGRESS)?.id().clone();
            // Same place as recorded: keep the earlier record rather than churn a new map.
            if doc.get_all(&progress, slug)?.len() == 1 {
                let reader = MapReader::at(&*doc, progress.clone(), PROGRESS);
                if let Ok(current) = resolve_progress(&reader, slug)
                    && (current.fraction, current.position) == (fraction, position)
                {
                    return Ok(());
                }
            }
            let value = ReadingProgress {
                fraction,
                position,
                updated_at: now_ms,
            };
            write_progress(doc, &progress, slug, &value)
        })
    }

    /// Forgets an article's progress; forgetting missing progress changes nothing.
    pub fn clear_progress(
        &mut self,
        slug: &str,
        now_ms: i64,
    ) -> Result<Option<ChangeHash>, DocumentError> {
        self.edit(now_ms, "progress.clear", |doc| {
            let progress = MapReader::root(&*doc).map(PROGRESS)?.id().clone();
            if doc.get(&progress, slug)?.is_some() {
                doc.delete(&progress, slug)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haven_protocol::{Bytes, DeviceId};

    const T0: i64 = 1_750_000_000_000;

    fn device(n: u8) -> DeviceId {
        Bytes([n; 16])
    }

    fn exchange(a: &mut ReadingStateDoc, b: &mut ReadingStateDoc) {
        let from_a = a.doc_mut().get_changes(&[]);
        let from_b = b.doc_mut().get_changes(&[]);
        a.doc_mut().apply_changes(from_b).unwrap();
        b.doc_mut().apply_changes(from_a).unwrap();
        assert_eq!(a.heads(), b.heads());
        assert_eq!(a.read().unwrap(), b.read().unwrap());
    }

    #[test]
    fn bookmarks_and_progress() {
        let mut doc = ReadingStateDoc::new(&device(1)).unwrap();
        doc.add_bookmark("what-is-consent", T0).unwrap();
        assert_eq!(doc.add_bookmark("what-is-consent", T0 + 1).unwrap(), None);
        doc.add_bookmark("after-an-assault", T0 + 2).unwrap();
        doc.remove_bookmark("after-an-assault", T0 + 3).unwrap();
        assert_eq!(
            doc.remove_bookmark("after-an-assault", T0 + 3).unwrap(),
            None
        );
        doc.set_progress("what-is-consent", 250_000, 420, T0 + 4)
            .unwrap();
        assert_eq!(
            doc.set_progress("what-is-consent", 250_000, 420, T0 + 5)
                .unwrap(),
            None
        );
        doc.set_progress("what-is-consent", 500_000, 900, T0 + 6)
            .unwrap();
        doc.set_progress("after-an-assault", PROGRESS_SCALE, 2000, T0 + 7)
            .unwrap();
        doc.clear_progress("after-an-assault", T0 + 8).unwrap();
        assert_eq!(
            doc.clear_progress("after-an-assault", T0 + 8).unwrap(),
            None
        );

        let state = doc.read().unwrap();
        assert_eq!(
            state.bookmarks,
            BTreeMap::from([("what-is-consent".to_owned(), T0)])
        );
        let progress = state.progress["what-is-consent"];
        assert_eq!(
            progress,
            ReadingProgress {
                fraction: 500_000,
                position: 900,
                updated_at: T0 + 6
            }
        );
        assert!((progress.as_f64() - 0.5).abs() < 1e-9);
        assert_eq!(state.progress.len(), 1);
        let loaded = ReadingStateDoc::load(&doc.doc_mut().save(), &device(2)).unwrap();
        assert_eq!(loaded.read().unwrap(), state);
    }

    #[test]
    fn invalid_input_is_refused() {
        let mut doc = ReadingStateDoc::new(&device(1)).unwrap();
        assert!(doc.add_bookmark("Not a slug", T0).is_err());
        assert!(doc.add_bookmark("", T0).is_err());
        let err = doc
            .set_progress("ok", PROGRESS_SCALE + 1, 0, T0)
            .unwrap_err();
        assert_eq!(err.field(), Some("progress.ok.fraction"));
        assert!(ReadingProgress::from_fraction(f64::NAN, 0, T0).is_err());
        assert_eq!(
            ReadingProgress::from_fraction(2.0, 0, T0).unwrap().fraction,
            PROGRESS_SCALE
        );
        assert_eq!(
            ReadingProgress::from_fraction(-1.0, 0, T0)
                .unwrap()
                .fraction,
            0
        );
        assert_eq!(
            ReadingProgress::from_fraction(0.3333333, 0, T0)
                .unwrap()
                .fraction,
            333_333
        );
        assert_eq!(doc.history().len(), 1);
    }

    #[test]
    fn concurrent_progress_keeps_the_latest_whole_update() {
        let mut a = ReadingStateDoc::new(&device(1)).unwrap();
        let mut b = ReadingStateDoc::new(&device(2)).unwrap();
        a.set_progress("consent", 100_000, 10, T0 + 9).unwrap();
        b.set_progress("consent", 900_000, 90, T0 + 5).unwrap();
        a.add_bookmark("consent", T0 + 3).unwrap();
        b.add_bookmark("consent", T0 + 1).unwrap();
        exchange(&mut a, &mut b);
        let state = a.read().unwrap();
        assert_eq!(
            state.progress["consent"],
            ReadingProgress {
                fraction: 100_000,
                position: 10,
                updated_at: T0 + 9
            }
        );
        assert_eq!(state.bookmarks["consent"], T0 + 1);
        // The next update resolves the conflict.
        b.set_progress("consent", 950_000, 95, T0 + 10).unwrap();
        exchange(&mut a, &mut b);
        assert_eq!(a.read().unwrap().progress["consent"].fraction, 950_000);
    }

    #[test]
    fn reconcile_round_trips() {
        let value = ReadingState {
            bookmarks: BTreeMap::from([("a".to_owned(), T0), ("b".to_owned(), T0 + 1)]),
            progress: BTreeMap::from([(
                "a".to_owned(),
                ReadingProgress {
                    fraction: 1,
                    position: 2,
                    updated_at: T0 + 3,
                },
            )]),
        };
        let mut doc = ReadingStateDoc::new(&device(1)).unwrap();
        doc.add_bookmark("c", T0).unwrap();
        doc.set_progress("c", 5, 5, T0).unwrap();
        doc.reconcile(&value, T0 + 4).unwrap();
        assert_eq!(doc.read().unwrap(), value);
        assert_eq!(doc.reconcile(&value, T0 + 5).unwrap(), None);
    }

    #[test]
    fn malformed_documents_name_the_field() {
        let mut doc = ReadingStateDoc::new(&device(1)).unwrap();
        doc.set_progress("a", 5, 5, T0).unwrap();
        doc.add_bookmark("b", T0).unwrap();
        let mut raw = doc.into_doc();
        let (_, progress) = raw.get(ROOT, PROGRESS).unwrap().unwrap();
        let (_, a) = raw.get(&progress, "a").unwrap().unwrap();
        raw.put(&a, FRACTION, 2_000_000).unwrap();
        assert_eq!(
            ReadingState::hydrate(&raw).unwrap_err().field(),
            Some("progress.a.fraction")
        );
        raw.put(&a, FRACTION, -1).unwrap();
        assert_eq!(
            ReadingState::hydrate(&raw).unwrap_err().field(),
            Some("progress.a.fraction")
        );
        raw.put(&a, FRACTION, 1).unwrap();
        raw.put(&a, POSITION, 1.5).unwrap();
        assert_eq!(
            ReadingState::hydrate(&raw).unwrap_err().field(),
            Some("progress.a.position")
        );
        raw.put(&a, POSITION, 1).unwrap();
        raw.put(&progress, "b", "half").unwrap();
        assert_eq!(
            ReadingState::hydrate(&raw).unwrap_err().field(),
            Some("progress.b")
        );
        raw.delete(&progress, "b").unwrap();
        let (_, bookmarks) = raw.get(ROOT, BOOKMARKS).unwrap().unwrap();
        raw.put(&bookmarks, "Bad Slug", T0).unwrap();
        assert_eq!(
            ReadingState::hydrate(&raw).unwrap_err().field(),
            Some("bookmarks.Bad Slug")
        );
        let (state, issues) = ReadingState::hydrate_lossy(&raw).unwrap();
        assert_eq!(issues.len(), 1);
        assert_eq!(state.bookmarks.len(), 1);
        assert_eq!(state.progress["a"].fraction, 1);
    }
}
