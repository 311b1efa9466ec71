//! A private journal entry: one Automerge document per entry.
//!
//! One document per entry keeps deltas small, deletion cheap and memory bounded (§2). The entry is
//! created by one device (its id is random), so, unlike the singletons, it needs no genesis: the
//! creating change makes the `title` and `body` Text objects and every later edit, on any device,
//! edits those same objects. That is what lets two devices type into the same entry offline and
//! merge character by character.
//!
//! Layout (root map):
//!
//! | key | Automerge type | meaning |
//! |---|---|---|
//! | `schema` | uint | 1 |
//! | `type` | str | `journal_entry` |
//! | `title` | Text | |
//! | `body` | Text | |
//! | `mood` | str, absent when unset | at most [`MAX_MOOD_CHARS`] |
//! | `tags` | list of str | edited in place, so concurrent tag edits merge |
//! | `created_at` | timestamp (Unix ms) | |
//! | `updated_at` | timestamp (Unix ms) | concurrent values resolve to the latest |
//!
//! Text positions count Unicode scalar values (Rust `char`s). Mobile platforms index strings in
//! UTF-16 code units (Kotlin, Swift's `NSString`/`utf16` view): the FFI converts before calling.

use std::fmt;

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ChangeHash, ROOT, ReadDoc};
use haven_protocol::DeviceId;

use super::fields::{self, MapReader};
use super::handle::{commit_options, new_doc};
use super::{DocHandle, DocType, Document, DocumentError};

/// A journal entry, as plain data (no Automerge types), so it can cross the FFI as is.
///
/// `Debug` shows lengths, never the text: a journal must not reach logs.
#[derive(Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub title: String,
    pub body: String,
    /// A short free-form mood ("calm", "tired"), or none.
    pub mood: Option<String>,
    /// Distinct labels, in the order the writer gave them.
    pub tags: Vec<String>,
    /// Milliseconds since the Unix epoch (UTC), as the creating device's clock said.
    pub created_at: i64,
    /// Milliseconds since the Unix epoch (UTC) of the last edit; after concurrent edits, the
    /// latest of them.
    pub updated_at: i64,
}

/// What the encrypted summary index keeps of an entry, so the entry list opens without loading
/// every entry.
#[derive(Clone, PartialEq, Eq)]
pub struct JournalSummary {
    pub title: String,
    /// The start of the body, whitespace runs collapsed to one space, at most [`EXCERPT_CHARS`]
    /// characters.
    pub excerpt: String,
    pub mood: Option<String>,
    pub tags: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The longest excerpt a [`JournalSummary`] keeps, in Unicode scalar values.
pub const EXCERPT_CHARS: usize = 120;
/// The longest mood, in Unicode scalar values.
pub const MAX_MOOD_CHARS: usize = 64;
/// The longest tag, in Unicode scalar values.
pub const MAX_TAG_CHARS: usize = 64;
/// The most tags [`JournalEntryDoc::set_tags`] accepts. (A merge of concurrent tag edits may
/// leave more; reading never refuses them.)
pub const MAX_TAGS: usize = 64;

const TITLE: &str = "title";
const BODY: &str = "body";
const MOOD: &str = "mood";
const TAGS: &str = "tags";
const CREATED_AT: &str = "created_at";
const UPDATED_AT: &str = "updated_at";

/// A journal entry open for editing.
pub type JournalEntryDoc = DocHandle<JournalEntry>;

impl Document for JournalEntry {
    const TYPE: DocType = DocType::JournalEntry;

    fn hydrate<D: ReadDoc>(doc: &D) -> Result<Self, DocumentError> {
        let root = MapReader::root_walked(doc);
        fields::check_header(&root, Self::TYPE)?;
        Ok(Self {
            title: root.text(TITLE)?,
            body: root.text(BODY)?,
            mood: root.opt_str(MOOD)?,
            // Two devices adding the same tag concurrently leave it twice in the list.
            tags: dedup(root.str_list(TAGS)?),
            created_at: root.earliest_timestamp(CREATED_AT)?,
            updated_at: root.latest_timestamp(UPDATED_AT)?,
        })
    }

    /// Writes the entry as given (no validation: the typed edits validate). Duplicate tags are
    /// written once, as hydrating would show them.
    fn reconcile<T: Transactable>(&self, tx: &mut T) -> Result<(), DocumentError> {
        fields::write_header(tx, Self::TYPE)?;
        fields::put_text(tx, &ROOT, TITLE, &self.title)?;
        fields::put_text(tx, &ROOT, BODY, &self.body)?;
        fields::put_opt_str(tx, &ROOT, MOOD, self.mood.as_deref())?;
        fields::reconcile_str_list(tx, &ROOT, TAGS, &dedup(self.tags.clone()))?;
        fields::put_timestamp(tx, &ROOT, CREATED_AT, self.created_at)?;
        fields::put_timestamp(tx, &ROOT, UPDATED_AT, self.updated_at)?;
        Ok(())
    }
}

impl JournalEntry {
    /// The entry as the summary index keeps it.
    pub fn summary(&self) -> JournalSummary {
        JournalSummary {
            title: self.title.clone(),
            excerpt: excerpt(&self.body, EXCERPT_CHARS),
            mood: self.mood.clone(),
            tags: self.tags.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

impl JournalSummary {
    /// The summary of the entry in `doc`, as `JournalEntry::hydrate(doc)?.summary()` gives it,
    /// reading of the body only the characters the excerpt needs: it is recomputed after every
    /// edit, and the whole body is most of what a hydrate reads.
    pub fn of<D: ReadDoc>(doc: &D) -> Result<Self, DocumentError> {
        let root = MapReader::root_walked(doc);
        fields::check_header(&root, JournalEntry::TYPE)?;
        let body = root.text_id(BODY)?;
        // A body of plain characters reads the same element by element; anything else before
        // the cut (a mark, an embedded object) goes through `ReadDoc::text`, which decides how
        // it shows.
        let mut plain = true;
        let elements = doc
            .list_range(&body, ..)
            .map_while(|item| match item.value {
                automerge::ValueRef::Scalar(automerge::ScalarValueRef::Str(text)) => Some(text),
                _ => {
                    plain = false;
                    None
                }
            });
        let mut excerpt = excerpt_of(
            elements.flat_map(|text| text.chars().collect::<Vec<_>>()),
            EXCERPT_CHARS,
        );
        if !plain {
            excerpt = self::excerpt(&doc.text(&body)?, EXCERPT_CHARS);
        }
        Ok(Self {
            title: root.text(TITLE)?,
            excerpt,
            mood: root.opt_str(MOOD)?,
            tags: dedup(root.str_list(TAGS)?),
            created_at: root.earliest_timestamp(CREATED_AT)?,
            updated_at: root.latest_timestamp(UPDATED_AT)?,
        })
    }
}

impl DocHandle<JournalEntry> {
    /// A new entry, written as `device`, created at `now_ms`: one change holding the title, the
    /// body, no mood and no tags.
    pub fn create(
        device: &DeviceId,
        now_ms: i64,
        title: &str,
        body: &str,
    ) -> Result<Self, DocumentError> {
        let entry = JournalEntry {
            title: title.to_owned(),
            body: body.to_owned(),
            mood: None,
            tags: Vec::new(),
            created_at: now_ms,
            updated_at: now_ms,
        };
        let mut doc = new_doc(device);
        entry.reconcile(&mut doc)?;
        doc.commit_with(commit_options(now_ms, Some("create")));
        Self::from_doc(doc)
    }

    /// A new document holding `entry` as it reads now (timestamps included), written as
    /// `device` in one change: a copy with none of the original's past revisions.
    pub fn create_copy(
        device: &DeviceId,
        entry: &JournalEntry,
        now_ms: i64,
    ) -> Result<Self, DocumentError> {
        let mut doc = new_doc(device);
        entry.reconcile(&mut doc)?;
        doc.commit_with(commit_options(now_ms, Some("copy")));
        Self::from_doc(doc)
    }

    /// Makes the title `title`, as a diff against the current title (so a concurrent edit on
    /// another device merges character-wise).
    pub fn set_title(
        &mut self,
        title: &str,
        now_ms: i64,
    ) -> Result<Option<ChangeHash>, DocumentError> {
        self.edit(now_ms, TITLE, |doc| {
            fields::put_text(doc, &ROOT, TITLE, title)?;
            touch(doc, now_ms)
        })
    }

    /// Makes the body `body`, as a diff against the current body.
    pub fn set_body(
        &mut self,
        body: &str,
        now_ms: i64,
    ) -> Result<Option<ChangeHash>, DocumentError> {
        self.edit(now_ms, BODY, |doc| {
            fields::put_text(doc, &ROOT, BODY, body)?;
            touch(doc, now_ms)
        })
    }

    /// Deletes `delete` characters of the title at `position` and inserts `insert` there.
    /// Positions and lengths count Unicode scalar values; out of range is
    /// [`DocumentError::OutOfRange`].
    pub fn splice_title(
        &mut self,
        position: usize,
        delete: usize,
        insert: &str,
        now_ms: i64,
    ) -> Result<Option<ChangeHash>, DocumentError> {
        self.splice(TITLE, Some(position), delete, insert, now_ms)
    }

    /// Deletes `delete` characters of the body at `position` and inserts `insert` there.
    /// Positions and lengths count Unicode scalar values; out of range is
    /// [`DocumentError::OutOfRange`].
    pub fn splice_body(
        &mut self,
        position: usize,
        delete: usize,
        insert: &str,
        now_ms: i64,
    ) -> Result<Option<ChangeHash>, DocumentError> {
        self.splice(BODY, Some(position), delete, insert, now_ms)
    }

    /// Appends `text` to the body.
    pub fn append_body(
        &mut self,
        text: &str,
        now_ms: i64,
    ) -> Result<Option<ChangeHash>, DocumentError> {
        self.splice(BODY, None, 0, text, now_ms)
    }

    /// Sets the mood (trimmed; `None` or blank clears it).
    pub fn set_mood(
        &mut self,
        mood: Option<&str>,
        now_ms: i64,
    ) -> Result<Option<ChangeHash>, DocumentError> {
        let mood = mood.map(str::trim).filter(|mood| !mood.is_empty());
        if let Some(mood) = mood {
            fields::check_len(MOOD, mood, MAX_MOOD_CHARS)?;
        }
        self.edit(now_ms, MOOD, |doc| {
            fields::put_opt_str(doc, &ROOT, MOOD, mood)?;
            touch(doc, now_ms)
        })
    }

    /// Sets the tags: each trimmed, blanks dropped, duplicates dropped (first kept). The list is
    /// edited in place, so another device's concurrent tag edits merge with these.
    pub fn set_tags(
        &mut self,
        tags: &[String],
        now_ms: i64,
    ) -> Result<Option<ChangeHash>, DocumentError> {
        let tags = dedup(
            tags.iter()
                .map(|tag| tag.trim())
                .filter(|tag| !tag.is_empty())
                .map(str::to_owned)
                .collect(),
        );
        if tags.len() > MAX_TAGS {
            return Err(DocumentError::Invalid {
                field: TAGS.to_owned(),
                reason: format!("{} tags, at most {MAX_TAGS} allowed", tags.len()),
            });
        }
        for (index, tag) in tags.iter().enumerate() {
            fields::check_len(&format!("{TAGS}[{index}]"), tag, MAX_TAG_CHARS)?;
        }
        self.edit(now_ms, TAGS, |doc| {
            fields::reconcile_str_list(doc, &ROOT, TAGS, &tags)?;
            touch(doc, now_ms)
        })
    }

    /// The entry as the summary index keeps it.
    pub fn summary(&self) -> Result<JournalSummary, DocumentError> {
        Ok(self.read()?.summary())
    }

    /// `position: None` appends.
    fn splice(
        &mut self,
        key: &'static str,
        position: Option<usize>,
        delete: usize,
        insert: &str,
        now_ms: i64,
    ) -> Result<Option<ChangeHash>, DocumentError> {
        self.edit(now_ms, key, |doc| {
            // Editing needs the Text object the entry was created with; a malformed field is
            // reported, not replaced (replacing it would drop concurrent edits to the original).
            let text = MapReader::root(&*doc).text_id(key)?;
            // The document indexes text by Unicode scalar value (checked when the handle was
            // made), so this is a count of chars.
            let length = doc.length(&text);
            let position = position.unwrap_or(length);
            let in_range = position <= length
                && position
                    .checked_add(delete)
                    .is_some_and(|end| end <= length);
            if !in_range {
                return Err(DocumentError::OutOfRange {
                    field: key.to_owned(),
                    position,
                    delete,
                    length,
                });
            }
            if delete == 0 && insert.is_empty() {
                return Ok(());
            }
            // `delete` is at most the text's length, far below isize::MAX.
            let delete = isize::try_from(delete).map_err(|_| DocumentError::OutOfRange {
                field: key.to_owned(),
                position,
                delete,
                length,
            })?;
            doc.splice_text(&text, position, delete, insert)?;
            touch(doc, now_ms)
        })
    }
}

/// Stamps `updated_at` if this edit wrote anything.
fn touch(doc: &mut AutoCommit, now_ms: i64) -> Result<(), DocumentError> {
    if doc.pending_ops() > 0 {
        fields::put_timestamp(doc, &ROOT, UPDATED_AT, now_ms)?;
    }
    Ok(())
}

/// Drops later duplicates, keeping the first occurrence's position.
fn dedup(values: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    values
        .into_iter()
        .filter(|value| seen.insert(value.clone()))
        .collect()
}

/// The start of `text` for a list preview: whitespace runs become one space, then at most `max`
/// characters, cut so as not to strip a combining mark, variation selector or joiner from the
/// character it belongs to (a cheap stand-in for grapheme segmentation).
fn excerpt(text: &str, max: usize) -> String {
    excerpt_of(text.chars(), max)
}

/// [`excerpt`] over the text's characters, read only as far as the excerpt needs.
fn excerpt_of(text: impl Iterator<Item = char>, max: usize) -> String {
    let mut chars: Vec<char> = Vec::with_capacity(max + 1);
    let mut pending_space = false;
    for c in text {
        if c.is_whitespace() {
            pending_space = !chars.is_empty();
            continue;
        }
        if pending_space {
            chars.push(' ');
            pending_space = false;
        }
        chars.push(c);
        if chars.len() > max {
            break;
        }
    }
    if chars.len() > max {
        let mut cut = max;
        while cut > 0 && (is_extender(chars[cut]) || chars[cut - 1] == '\u{200D}') {
            cut -= 1;
        }
        chars.truncate(cut);
        while chars.last() == Some(&' ') {
            chars.pop();
        }
    }
    chars.into_iter().collect()
}

/// Characters that attach to the one before them.
fn is_extender(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'
        | '\u{1AB0}'..='\u{1AFF}'
        | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}'
        | '\u{FE00}'..='\u{FE0F}'
        | '\u{FE20}'..='\u{FE2F}'
        | '\u{200D}'
        | '\u{1F3FB}'..='\u{1F3FF}'
        | '\u{E0020}'..='\u{E007F}')
}

impl fmt::Debug for JournalEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalEntry")
            .field("title_chars", &self.title.chars().count())
            .field("body_chars", &self.body.chars().count())
            .field("has_mood", &self.mood.is_some())
            .field("tags", &self.tags.len())
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

impl fmt::Debug for JournalSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JournalSummary")
            .field("title_chars", &self.title.chars().count())
            .field("excerpt_chars", &self.excerpt.chars().count())
            .field("has_mood", &self.mood.is_some())
            .field("tags", &self.tags.len())
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::{ObjType, ScalarValue};
    use haven_protocol::Bytes;

    const T0: i64 = 1_750_000_000_123;

    fn device(n: u8) -> DeviceId {
        Bytes([n; 16])
    }

    fn entry() -> JournalEntryDoc {
        JournalEntryDoc::create(&device(1), T0, "Tuesday", "I slept a little better.").unwrap()
    }

    fn changes(doc: &mut JournalEntryDoc) -> usize {
        doc.doc_mut().get_changes(&[]).len()
    }

    /// Both ways, every change, then the heads must agree.
    fn exchange(a: &mut JournalEntryDoc, b: &mut JournalEntryDoc) {
        let from_a = a.doc_mut().get_changes(&[]);
        let from_b = b.doc_mut().get_changes(&[]);
        a.doc_mut().apply_changes(from_b).unwrap();
        b.doc_mut().apply_changes(from_a).unwrap();
        assert_eq!(a.heads(), b.heads());
        assert_eq!(a.read().unwrap(), b.read().unwrap());
    }

    /// A second device holding the same entry.
    fn copy_on(doc: &mut JournalEntryDoc, n: u8) -> JournalEntryDoc {
        JournalEntryDoc::load(&doc.doc_mut().save(), &device(n)).unwrap()
    }

    #[test]
    fn create_is_one_change_and_hydrates() {
        let mut doc = entry();
        assert_eq!(changes(&mut doc), 1);
        let read = doc.read().unwrap();
        assert_eq!(read.title, "Tuesday");
        assert_eq!(read.body, "I slept a little better.");
        assert_eq!(read.mood, None);
        assert!(read.tags.is_empty());
        assert_eq!((read.created_at, read.updated_at), (T0, T0));
        let history = doc.history();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].actor, hex(&[1; 16]));
        assert_eq!(history[0].time_secs, T0 / 1000);
        assert_eq!(history[0].message.as_deref(), Some("create"));
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn every_edit_is_exactly_one_change() {
        let mut doc = entry();
        let t = T0 + 60_000;
        assert!(doc.set_title("Tuesday night", t).unwrap().is_some());
        assert!(doc.set_body("I slept better.", t + 1).unwrap().is_some());
        assert!(doc.splice_body(2, 5, "rested", t + 2).unwrap().is_some());
        assert!(doc.append_body(" Good.", t + 3).unwrap().is_some());
        assert!(doc.splice_title(0, 0, "A ", t + 4).unwrap().is_some());
        assert!(doc.set_mood(Some(" calm "), t + 5).unwrap().is_some());
        let tags = vec!["sleep".to_owned(), "  ".to_owned(), "sleep".to_owned()];
        assert!(doc.set_tags(&tags, t + 6).unwrap().is_some());
        assert_eq!(changes(&mut doc), 8);
        let read = doc.read().unwrap();
        assert_eq!(read.title, "A Tuesday night");
        assert_eq!(read.body, "I rested better. Good.");
        assert_eq!(read.mood.as_deref(), Some("calm"));
        assert_eq!(read.tags, ["sleep"]);
        assert_eq!(read.updated_at, t + 6);
        assert_eq!(read.created_at, T0);
        let messages: Vec<Option<String>> = doc
            .history()
            .into_iter()
            .map(|change| change.message)
            .collect();
        let expected = [
            "create", "title", "body", "body", "body", "title", "mood", "tags",
        ];
        assert_eq!(
            messages,
            expected.map(|m| Some(m.to_owned())).to_vec(),
            "history is causal order"
        );
    }

    #[test]
    fn edits_that_change_nothing_commit_nothing() {
        let mut doc = entry();
        assert_eq!(doc.set_title("Tuesday", T0 + 1).unwrap(), None);
        assert_eq!(doc.splice_body(3, 0, "", T0 + 1).unwrap(), None);
        assert_eq!(doc.append_body("", T0 + 1).unwrap(), None);
        assert_eq!(doc.set_mood(None, T0 + 1).unwrap(), None);
        assert_eq!(doc.set_tags(&[], T0 + 1).unwrap(), None);
        assert_eq!(changes(&mut doc), 1);
        assert_eq!(doc.read().unwrap().updated_at, T0);
    }

    #[test]
    fn replace_is_a_small_diff() {
        let mut doc = entry();
        doc.set_body("I slept a little better today.", T0 + 1)
            .unwrap();
        let change = doc.doc_mut().get_last_local_change().unwrap();
        // " today" (6 inserts) and the updated_at put.
        assert_eq!(change.len(), 7);
    }

    #[test]
    fn large_replacements_splice_instead_of_diffing() {
        let mut doc = entry();
        let old: String = "ab".repeat(3000);
        doc.set_body(&old, T0 + 1).unwrap();
        let new: String = format!("x{}y", "ba".repeat(3000));
        let started = std::time::Instant::now();
        doc.set_body(&new, T0 + 2).unwrap();
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(doc.read().unwrap().body, new);
    }

    #[test]
    fn positions_count_unicode_scalar_values() {
        // 'é' is 2 UTF-8 bytes, '🌧' is 4 UTF-8 bytes and 2 UTF-16 units: each is one position.
        let mut doc = JournalEntryDoc::create(&device(1), T0, "", "é🌧x").unwrap();
        doc.splice_body(2, 1, "y", T0).unwrap();
        assert_eq!(doc.read().unwrap().body, "é🌧y");
        doc.splice_body(1, 1, "☀", T0).unwrap();
        assert_eq!(doc.read().unwrap().body, "é☀y");
        doc.splice_body(3, 0, "!", T0).unwrap();
        assert_eq!(doc.read().unwrap().body, "é☀y!");
    }

    #[test]
    fn out_of_range_splices_are_refused_and_leave_no_trace() {
        let mut doc = JournalEntryDoc::create(&device(1), T0, "abc", "é🌧x").unwrap();
        let heads = doc.heads();
        for (position, delete) in [(4, 0), (3, 2), (0, 4), (usize::MAX, 0), (1, usize::MAX)] {
            let err = doc.splice_body(position, delete, "z", T0 + 1).unwrap_err();
            assert_eq!(
                err,
                DocumentError::OutOfRange {
                    field: "body".to_owned(),
                    position,
                    delete,
                    length: 3
                }
            );
        }
        assert_eq!(
            doc.splice_title(4, 0, "z", T0 + 1).unwrap_err().field(),
            Some("title")
        );
        assert_eq!(doc.heads(), heads);
        assert_eq!(doc.doc().pending_ops(), 0);
        // The whole range is fine.
        doc.splice_body(0, 3, "", T0 + 1).unwrap();
        assert_eq!(doc.read().unwrap().body, "");
    }

    #[test]
    fn invalid_mood_and_tags_are_refused() {
        let mut doc = entry();
        let long = "x".repeat(MAX_MOOD_CHARS + 1);
        assert_eq!(
            doc.set_mood(Some(&long), T0).unwrap_err().field(),
            Some("mood")
        );
        let tags = vec!["ok".to_owned(), "y".repeat(MAX_TAG_CHARS + 1)];
        assert_eq!(
            doc.set_tags(&tags, T0).unwrap_err().field(),
            Some("tags[1]")
        );
        let many: Vec<String> = (0..=MAX_TAGS).map(|n| n.to_string()).collect();
        assert_eq!(doc.set_tags(&many, T0).unwrap_err().field(), Some("tags"));
        assert_eq!(changes(&mut doc), 1);
    }

    #[test]
    fn hydrate_round_trips_and_reconcile_is_idempotent() {
        let value = JournalEntry {
            title: "Note".into(),
            body: "Line one\nLine two 🌱".into(),
            mood: Some("hopeful".into()),
            tags: vec!["therapy".into(), "sleep".into()],
            created_at: T0,
            updated_at: T0 + 5,
        };
        let mut doc = entry();
        doc.reconcile(&value, T0 + 5).unwrap();
        assert_eq!(doc.read().unwrap(), value);
        assert_eq!(doc.reconcile(&value, T0 + 6).unwrap(), None);
        let loaded = JournalEntryDoc::load(&doc.doc_mut().save(), &device(2)).unwrap();
        assert_eq!(loaded.read().unwrap(), value);
    }

    #[test]
    fn the_summary_read_from_the_document_is_the_hydrated_one() {
        let bodies = [
            String::new(),
            "  \n ".to_owned(),
            "short".to_owned(),
            format!("  First   line\n\nsecond {}", "word ".repeat(400)),
            format!("{}e\u{301} after", "x".repeat(EXCERPT_CHARS - 1)),
            format!("{}{}", " \t".repeat(300), "late start ".repeat(30)),
            "👩\u{200D}👧 ".repeat(100),
        ];
        for body in &bodies {
            let mut doc = entry();
            doc.set_body(body, T0 + 1).unwrap();
            doc.splice_body(0, 0, "Oh. ", T0 + 2).unwrap();
            let hydrated = doc.read().unwrap().summary();
            assert_eq!(JournalSummary::of(doc.doc()).unwrap(), hydrated);
        }
        // A mark in the body (Haven writes none; another client may): the text path decides.
        let mut doc = entry();
        let body = MapReader::root(doc.doc()).text_id(BODY).unwrap();
        doc.doc_mut()
            .mark(
                &body,
                automerge::marks::Mark::new("bold".into(), true, 2, 6),
                automerge::marks::ExpandMark::None,
            )
            .unwrap();
        doc.doc_mut().commit();
        let hydrated = doc.read().unwrap().summary();
        assert_eq!(JournalSummary::of(doc.doc()).unwrap(), hydrated);
    }

    #[test]
    fn summary_keeps_the_start_of_the_body() {
        let mut doc = entry();
        let body = format!("  First   line\n\nsecond {}", "word ".repeat(40));
        doc.set_body(&body, T0 + 1).unwrap();
        doc.set_tags(&["a".to_owned()], T0 + 2).unwrap();
        let summary = doc.summary().unwrap();
        assert!(summary.excerpt.starts_with("First line second word word"));
        assert!(summary.excerpt.chars().count() <= EXCERPT_CHARS);
        assert_eq!(summary.title, "Tuesday");
        assert_eq!(summary.tags, ["a"]);
        assert_eq!(summary.updated_at, T0 + 2);
        // A family emoji joined by ZWJ is not cut in the middle.
        let family = "👩\u{200D}👧";
        let text = format!("{}{family}", "x".repeat(EXCERPT_CHARS - 2));
        let cut = excerpt(&text, EXCERPT_CHARS);
        assert_eq!(cut, "x".repeat(EXCERPT_CHARS - 2));
        assert_eq!(excerpt("short", EXCERPT_CHARS), "short");
        assert_eq!(excerpt("  \n ", EXCERPT_CHARS), "");
    }

    #[test]
    fn debug_never_shows_the_text() {
        let read = entry().read().unwrap();
        let shown = format!("{read:?} {:?} {:?}", read.summary(), entry());
        assert!(!shown.contains("Tuesday") && !shown.contains("slept"));
    }

    #[test]
    fn malformed_documents_name_the_field() {
        type Breaker = fn(&mut AutoCommit);
        let cases: [(&str, Breaker); 8] = [
            ("title", |doc| {
                doc.put(ROOT, "title", "plain string").unwrap()
            }),
            ("body", |doc| doc.delete(ROOT, "body").unwrap()),
            ("mood", |doc| doc.put(ROOT, "mood", 3).unwrap()),
            ("tags", |doc| {
                doc.put_object(ROOT, "tags", ObjType::Map).unwrap();
            }),
            ("tags[0]", |doc| {
                let tags = doc.put_object(ROOT, "tags", ObjType::List).unwrap();
                doc.insert(&tags, 0, true).unwrap();
            }),
            ("created_at", |doc| {
                doc.put(ROOT, "created_at", "yesterday").unwrap()
            }),
            ("updated_at", |doc| {
                doc.put_object(ROOT, "updated_at", ObjType::Text).unwrap();
            }),
            ("schema", |doc| {
                doc.put(ROOT, "schema", ScalarValue::Uint(9)).unwrap()
            }),
        ];
        for (field, break_it) in cases {
            let mut doc = entry().into_doc();
            break_it(&mut doc);
            let err = JournalEntry::hydrate(&doc).unwrap_err();
            assert_eq!(err.field(), Some(field), "{err}");
        }
        let mut doc = entry().into_doc();
        doc.put(ROOT, "type", "journal_index").unwrap();
        assert!(matches!(
            JournalEntry::hydrate(&doc).unwrap_err(),
            DocumentError::WrongDocType { .. }
        ));
        assert!(JournalEntryDoc::from_doc(doc).is_err());
        assert!(JournalEntry::hydrate(&AutoCommit::new()).is_err());
    }

    #[test]
    fn edits_on_a_malformed_entry_are_refused_or_repair() {
        let mut raw = entry().into_doc();
        raw.put(ROOT, "body", "not text").unwrap();
        raw.commit();
        let mut doc = JournalEntryDoc::from_doc(raw).unwrap();
        let err = doc.splice_body(0, 0, "x", T0).unwrap_err();
        assert!(matches!(err, DocumentError::WrongType { ref field, .. } if field == "body"));
        assert!(doc.append_body("x", T0).is_err());
        // A replace makes a fresh Text object.
        doc.set_body("fresh", T0 + 1).unwrap();
        assert_eq!(doc.read().unwrap().body, "fresh");
    }

    #[test]
    fn garbage_bytes_do_not_load() {
        for bytes in [&b""[..], b"\x85\x6f\x4a\x83", b"not automerge at all"] {
            assert!(JournalEntryDoc::load(bytes, &device(1)).is_err());
        }
        let mut doc = entry();
        let mut saved = doc.doc_mut().save();
        let middle = saved.len() / 2;
        saved[middle] ^= 0xff;
        assert!(JournalEntryDoc::load(&saved, &device(1)).is_err());
    }

    #[test]
    fn concurrent_inserts_at_different_places_merge() {
        let mut a = JournalEntryDoc::create(&device(1), T0, "Day", "I went out.").unwrap();
        let mut b = copy_on(&mut a, 2);
        a.splice_body(0, 0, "Today ", T0 + 1).unwrap();
        b.append_body(" It was fine.", T0 + 2).unwrap();
        a.set_title("Good day", T0 + 3).unwrap();
        b.splice_title(3, 0, " one", T0 + 4).unwrap();
        exchange(&mut a, &mut b);
        let merged = a.read().unwrap();
        assert_eq!(merged.body, "Today I went out. It was fine.");
        // A's diff replaced "D" by "d"; B's insertion after "Day" stays after it.
        assert_eq!(merged.title, "Good day one");
        assert_eq!(merged.updated_at, T0 + 4, "the latest edit's time");
        assert_eq!(a.history(), b.history());
    }

    #[test]
    fn concurrent_inserts_at_the_same_place_keep_both() {
        let mut a = JournalEntryDoc::create(&device(1), T0, "", "ab").unwrap();
        let mut b = copy_on(&mut a, 2);
        a.splice_body(1, 0, "XYZ", T0 + 1).unwrap();
        b.splice_body(1, 0, "123", T0 + 1).unwrap();
        exchange(&mut a, &mut b);
        let body = a.read().unwrap().body;
        // Each run stays contiguous; which comes first is decided by actor, the same everywhere.
        assert!(body == "aXYZ123b" || body == "a123XYZb", "{body}");
    }

    #[test]
    fn a_delete_overlapping_a_concurrent_insert_keeps_the_insert() {
        let mut a = JournalEntryDoc::create(&device(1), T0, "", "one two three").unwrap();
        let mut b = copy_on(&mut a, 2);
        // A deletes "two " while B types inside it.
        a.splice_body(4, 4, "", T0 + 1).unwrap();
        b.splice_body(6, 0, "XX", T0 + 1).unwrap();
        // And A replaces the whole text while B appends.
        exchange(&mut a, &mut b);
        assert_eq!(a.read().unwrap().body, "one XXthree");
        a.set_body("done", T0 + 2).unwrap();
        b.append_body("!", T0 + 2).unwrap();
        exchange(&mut a, &mut b);
        assert_eq!(a.read().unwrap().body, "done!");
    }

    /// The entry read field by field, each with its own seek: what `hydrate` read before it
    /// walked the root once.
    fn read_field_by_field(doc: &AutoCommit) -> JournalEntry {
        let root = MapReader::root(doc);
        fields::check_header(&root, JournalEntry::TYPE).unwrap();
        JournalEntry {
            title: root.text(TITLE).unwrap(),
            body: root.text(BODY).unwrap(),
            mood: root.opt_str(MOOD).unwrap(),
            tags: dedup(root.str_list(TAGS).unwrap()),
            created_at: root.earliest_timestamp(CREATED_AT).unwrap(),
            updated_at: root.latest_timestamp(UPDATED_AT).unwrap(),
        }
    }

    #[test]
    fn a_walked_root_reads_like_a_seek_per_field_with_conflicts() {
        let mut a = entry();
        a.set_tags(&["sleep".to_owned()], T0 + 1).unwrap();
        let mut b = copy_on(&mut a, 2);
        // Concurrent writes of the same keys: mood and both timestamps conflict after merging.
        a.set_mood(Some("tired"), T0 + 9).unwrap();
        a.append_body(" Then the dog woke me.", T0 + 9).unwrap();
        b.set_mood(Some("hopeful"), T0 + 4).unwrap();
        b.set_tags(&["sleep".to_owned(), "dog".to_owned()], T0 + 4)
            .unwrap();
        let from_b = b.doc_mut().get_changes(&[]);
        a.doc_mut().apply_changes(from_b).unwrap();
        let conflicts = a.doc_mut().get_all(ROOT, UPDATED_AT).unwrap().len();
        assert_eq!(conflicts, 2, "the test needs a conflicting timestamp");
        let walked = a.read().unwrap();
        assert_eq!(walked, read_field_by_field(a.doc_mut()));
        assert_eq!(walked.updated_at, T0 + 9);
        let summary = JournalSummary::of(a.doc_mut()).unwrap();
        assert_eq!(
            (
                summary.title,
                summary.mood,
                summary.tags,
                summary.updated_at
            ),
            (walked.title, walked.mood, walked.tags, walked.updated_at)
        );
    }

    #[test]
    fn concurrent_tag_edits_merge_item_wise() {
        let mut a = entry();
        a.set_tags(&["sleep".to_owned(), "work".to_owned()], T0 + 1)
            .unwrap();
        let mut b = copy_on(&mut a, 2);
        a.set_tags(&["sleep".to_owned()], T0 + 2).unwrap();
        b.set_tags(
            &["sleep".to_owned(), "work".to_owned(), "family".to_owned()],
            T0 + 2,
        )
        .unwrap();
        exchange(&mut a, &mut b);
        assert_eq!(a.read().unwrap().tags, ["sleep", "family"]);
        // The same tag added on both sides shows once.
        a.set_tags(
            &["sleep".to_owned(), "family".to_owned(), "x".to_owned()],
            T0 + 3,
        )
        .unwrap();
        b.set_tags(
            &["x".to_owned(), "sleep".to_owned(), "family".to_owned()],
            T0 + 3,
        )
        .unwrap();
        exchange(&mut a, &mut b);
        let tags = a.read().unwrap().tags;
        assert_eq!(tags.iter().filter(|tag| *tag == "x").count(), 1);
        assert_eq!(tags.len(), 3);
    }
}
