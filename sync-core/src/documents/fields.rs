//! Reading and writing typed fields of Automerge maps, shared by every document type.
//!
//! Readers are strict about types and name the field (as a path such as `resources[2].phone`) in
//! every error. Writers compare before writing, because an Automerge `put` of an equal value is
//! still an operation: skipping it is what makes republishing unchanged content a no-op.

use automerge::transaction::Transactable;
use automerge::{
    AutomergeError, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, ScalarValueRef, Value, ValueRef,
};

use super::{DocType, DocumentError, SCHEMA_VERSION};

pub(crate) const SCHEMA_KEY: &str = "schema";
pub(crate) const TYPE_KEY: &str = "type";

/// A map object of a document, with its path for error messages.
pub(crate) struct MapReader<'a, D> {
    doc: &'a D,
    obj: ObjId,
    path: String,
    /// The map's visible entries, read in one walk (see [`MapReader::root_walked`]).
    walked: Option<Vec<WalkedEntry>>,
}

/// One key of a walked map: its winning value, that value's id, and whether others conflict.
struct WalkedEntry {
    key: String,
    value: Value<'static>,
    id: ObjId,
    conflict: bool,
}

impl<'a, D: ReadDoc> MapReader<'a, D> {
    pub(crate) fn root(doc: &'a D) -> Self {
        Self {
            doc,
            obj: ROOT,
            path: String::new(),
            walked: None,
        }
    }

    /// The root map, its keys read in one walk: for a reader that takes most of a small root
    /// (a journal entry's, about ten keys), where a seek per field costs more. Not for maps
    /// with many keys of which a reader needs a few.
    pub(crate) fn root_walked(doc: &'a D) -> Self {
        let walked = doc
            .map_range(ROOT, ..)
            .map(|item| WalkedEntry {
                id: item.id(),
                key: item.key.into_owned(),
                value: Value::from(item.value),
                conflict: item.conflict,
            })
            .collect();
        Self {
            walked: Some(walked),
            ..Self::root(doc)
        }
    }

    /// The walked entry under `key`, if this map was walked and holds it.
    fn walked_entry(&self, key: &str) -> Option<&WalkedEntry> {
        self.walked.as_ref()?.iter().find(|entry| entry.key == key)
    }

    /// The winning value under `key` and its id.
    fn lookup(&self, key: &str) -> Result<Option<(Value<'a>, ObjId)>, DocumentError> {
        if self.walked.is_none() {
            return Ok(self.doc.get(&self.obj, key)?);
        }
        Ok(self
            .walked_entry(key)
            .map(|entry| (entry.value.clone(), entry.id.clone())))
    }

    /// The map `obj` of `doc`, named `path` in errors.
    pub(crate) fn at(doc: &'a D, obj: ObjId, path: &str) -> Self {
        Self {
            doc,
            obj,
            path: path.to_owned(),
            walked: None,
        }
    }

    /// The path of `key` in this map, as errors name it.
    pub(crate) fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&self, key: &str) -> Result<Option<Value<'a>>, DocumentError> {
        Ok(self.lookup(key)?.map(|(value, _)| value))
    }

    fn scalar(&self, key: &str, expected: &'static str) -> Result<ScalarValue, DocumentError> {
        match self.get(key)? {
            Some(Value::Scalar(scalar)) => Ok(scalar.into_owned()),
            Some(Value::Object(_)) => Err(self.wrong_type(key, expected)),
            None => Err(DocumentError::Missing {
                field: self.field(key),
            }),
        }
    }

    fn wrong_type(&self, key: &str, expected: &'static str) -> DocumentError {
        DocumentError::WrongType {
            field: self.field(key),
            expected,
        }
    }

    pub(crate) fn str(&self, key: &str) -> Result<String, DocumentError> {
        match self.scalar(key, "a string")? {
            ScalarValue::Str(text) => Ok(text.to_string()),
            _ => Err(self.wrong_type(key, "a string")),
        }
    }

    /// A string that may be absent (or null).
    pub(crate) fn opt_str(&self, key: &str) -> Result<Option<String>, DocumentError> {
        match self.get(key)? {
            None => Ok(None),
            Some(Value::Scalar(scalar)) => match scalar.as_ref() {
                ScalarValue::Str(text) => Ok(Some(text.to_string())),
                ScalarValue::Null => Ok(None),
                _ => Err(self.wrong_type(key, "a string or null")),
            },
            Some(Value::Object(_)) => Err(self.wrong_type(key, "a string or null")),
        }
    }

    /// A non-negative integer; other clients may have written it signed.
    pub(crate) fn u64(&self, key: &str) -> Result<u64, DocumentError> {
        match self.scalar(key, "a non-negative integer")? {
            ScalarValue::Uint(value) => Ok(value),
            ScalarValue::Int(value) => {
                u64::try_from(value).map_err(|_| self.wrong_type(key, "a non-negative integer"))
            }
            _ => Err(self.wrong_type(key, "a non-negative integer")),
        }
    }

    pub(crate) fn u32(&self, key: &str) -> Result<u32, DocumentError> {
        u32::try_from(self.u64(key)?).map_err(|_| DocumentError::Invalid {
            field: self.field(key),
            reason: "out of range".to_owned(),
        })
    }

    pub(crate) fn bool(&self, key: &str) -> Result<bool, DocumentError> {
        match self.scalar(key, "a boolean")? {
            ScalarValue::Boolean(value) => Ok(value),
            _ => Err(self.wrong_type(key, "a boolean")),
        }
    }

    /// Milliseconds since the Unix epoch, stored as an Automerge timestamp.
    pub(crate) fn timestamp(&self, key: &str) -> Result<i64, DocumentError> {
        match self.scalar(key, "a timestamp")? {
            ScalarValue::Timestamp(millis) | ScalarValue::Int(millis) => Ok(millis),
            _ => Err(self.wrong_type(key, "a timestamp")),
        }
    }

    /// Every timestamp the key holds. Concurrent writes to one key survive a merge as a
    /// conflict; documents whose timestamps must not depend on Automerge's winner (which is
    /// decided by op id, not by time) resolve them with [`Self::latest_timestamp`] or
    /// [`Self::earliest_timestamp`].
    fn timestamps(&self, key: &str) -> Result<Vec<i64>, DocumentError> {
        // A walk keeps only the winner: a key with conflicting values reads them all.
        let walked = self
            .walked_entry(key)
            .filter(|entry| !entry.conflict)
            .map(|entry| vec![(entry.value.clone(), entry.id.clone())]);
        let values = match walked {
            Some(values) => values,
            None => self.doc.get_all(&self.obj, key)?,
        };
        if values.is_empty() {
            return Err(DocumentError::Missing {
                field: self.field(key),
            });
        }
        values
            .iter()
            .map(|(value, _)| match value {
                Value::Scalar(scalar) => match scalar.as_ref() {
                    ScalarValue::Timestamp(millis) | ScalarValue::Int(millis) => Ok(*millis),
                    _ => Err(self.wrong_type(key, "a timestamp")),
                },
                Value::Object(_) => Err(self.wrong_type(key, "a timestamp")),
            })
            .collect()
    }

    /// The greatest of the key's (possibly conflicting) timestamps.
    pub(crate) fn latest_timestamp(&self, key: &str) -> Result<i64, DocumentError> {
        let all = self.timestamps(key)?;
        Ok(all.into_iter().max().unwrap_or_default())
    }

    /// The least of the key's (possibly conflicting) timestamps.
    pub(crate) fn earliest_timestamp(&self, key: &str) -> Result<i64, DocumentError> {
        let all = self.timestamps(key)?;
        Ok(all.into_iter().min().unwrap_or_default())
    }

    /// The content of a Text object.
    pub(crate) fn text(&self, key: &str) -> Result<String, DocumentError> {
        let id = self.text_id(key)?;
        Ok(self.doc.text(&id)?)
    }

    /// The id of the Text object under `key`.
    pub(crate) fn text_id(&self, key: &str) -> Result<ObjId, DocumentError> {
        self.object(key, ObjType::Text, "a text object")
    }

    /// The id of this map, for writing into it.
    pub(crate) fn id(&self) -> &ObjId {
        &self.obj
    }

    /// A list of strings.
    pub(crate) fn str_list(&self, key: &str) -> Result<Vec<String>, DocumentError> {
        let list = self.object(key, ObjType::List, "a list")?;
        let path = self.field(key);
        // One walk of the list: a `get` per index seeks from the start each time.
        self.doc
            .list_range(&list, ..)
            .map(|item| match item.value {
                ValueRef::Scalar(ScalarValueRef::Str(text)) => Ok(text.to_string()),
                _ => Err(DocumentError::WrongType {
                    field: format!("{path}[{}]", item.index),
                    expected: "a string",
                }),
            })
            .collect()
    }

    /// A nested map.
    pub(crate) fn map(&self, key: &str) -> Result<Self, DocumentError> {
        let obj = self.object(key, ObjType::Map, "a map")?;
        Ok(Self {
            doc: self.doc,
            obj,
            path: self.field(key),
            walked: None,
        })
    }

    /// Every map the key holds: more than one when devices wrote a fresh map under the same key
    /// concurrently (a conflict Automerge keeps until the next write), in Automerge's order (the
    /// default winner last).
    pub(crate) fn maps_all(&self, key: &str) -> Result<Vec<Self>, DocumentError> {
        let values = self.doc.get_all(&self.obj, key)?;
        if values.is_empty() {
            return Err(DocumentError::Missing {
                field: self.field(key),
            });
        }
        values
            .into_iter()
            .map(|(value, obj)| match value {
                Value::Object(ObjType::Map) => Ok(Self {
                    doc: self.doc,
                    obj,
                    path: self.field(key),
                    walked: None,
                }),
                _ => Err(self.wrong_type(key, "a map")),
            })
            .collect()
    }

    /// A list whose items are all maps.
    pub(crate) fn list_of_maps(&self, key: &str) -> Result<Vec<Self>, DocumentError> {
        let list = self.object(key, ObjType::List, "a list")?;
        let path = self.field(key);
        self.doc
            .list_range(&list, ..)
            .map(|item| match item.value {
                ValueRef::Object(ObjType::Map) => Ok(Self {
                    doc: self.doc,
                    obj: item.id(),
                    path: format!("{path}[{}]", item.index),
                    walked: None,
                }),
                _ => Err(DocumentError::WrongType {
                    field: format!("{path}[{}]", item.index),
                    expected: "a map",
                }),
            })
            .collect()
    }

    /// The keys of this map, in Automerge's (sorted) order.
    pub(crate) fn keys(&self) -> Vec<String> {
        self.doc.keys(&self.obj).collect()
    }

    fn object(
        &self,
        key: &str,
        obj_type: ObjType,
        expected: &'static str,
    ) -> Result<ObjId, DocumentError> {
        match self.lookup(key)? {
            Some((Value::Object(found), id)) if found == obj_type => Ok(id),
            Some(_) => Err(self.wrong_type(key, expected)),
            None => Err(DocumentError::Missing {
                field: self.field(key),
            }),
        }
    }
}

/// Checks the root `schema` is one this build understands.
pub(crate) fn check_schema<D: ReadDoc>(root: &MapReader<'_, D>) -> Result<(), DocumentError> {
    let found = root.u64(SCHEMA_KEY)?;
    if found == 0 || found > SCHEMA_VERSION {
        return Err(DocumentError::UnsupportedSchema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Checks the root `schema` and `type`, before any other field is read.
pub(crate) fn check_header<D: ReadDoc>(
    root: &MapReader<'_, D>,
    expected: DocType,
) -> Result<(), DocumentError> {
    check_schema(root)?;
    let found = root.str(TYPE_KEY)?;
    if found != expected.as_str() {
        return Err(DocumentError::WrongDocType { expected, found });
    }
    Ok(())
}

/// Writes the root `schema` and `type`.
pub(crate) fn write_header<T: Transactable>(
    tx: &mut T,
    doc_type: DocType,
) -> Result<(), AutomergeError> {
    put_scalar(tx, &ROOT, SCHEMA_KEY, ScalarValue::Uint(SCHEMA_VERSION))?;
    put_str(tx, &ROOT, TYPE_KEY, doc_type.as_str())
}

/// Puts a scalar unless the key already holds exactly that value (and no conflicting one).
pub(crate) fn put_scalar<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    value: ScalarValue,
) -> Result<(), AutomergeError> {
    if current_scalar(tx, obj, key)?.as_ref() == Some(&value) {
        return Ok(());
    }
    tx.put(obj, key, value)
}

pub(crate) fn put_str<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    value: &str,
) -> Result<(), AutomergeError> {
    put_scalar(tx, obj, key, ScalarValue::Str(value.into()))
}

/// Puts a string, or removes the key for `None`.
pub(crate) fn put_opt_str<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    value: Option<&str>,
) -> Result<(), AutomergeError> {
    match value {
        Some(text) => put_str(tx, obj, key, text),
        None if tx.get(obj, key)?.is_some() => tx.delete(obj, key),
        None => Ok(()),
    }
}

pub(crate) fn put_u64<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    value: u64,
) -> Result<(), AutomergeError> {
    put_scalar(tx, obj, key, ScalarValue::Uint(value))
}

pub(crate) fn put_bool<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    value: bool,
) -> Result<(), AutomergeError> {
    put_scalar(tx, obj, key, ScalarValue::Boolean(value))
}

pub(crate) fn put_timestamp<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    millis: i64,
) -> Result<(), AutomergeError> {
    put_scalar(tx, obj, key, ScalarValue::Timestamp(millis))
}

/// Makes a Text object hold `value`, by a diff (`update_text`) when the object exists, so an edit
/// becomes a small change that merges with concurrent edits.
pub(crate) fn put_text<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    value: &str,
) -> Result<(), AutomergeError> {
    let existing = match tx.get_all(obj, key)?.as_slice() {
        [(Value::Object(ObjType::Text), id)] => Some(id.clone()),
        _ => None,
    };
    match existing {
        Some(id) => update_text(tx, &id, value),
        None => {
            let text = tx.put_object(obj, key, ObjType::Text)?;
            tx.splice_text(&text, 0, 0, value)
        }
    }
}

/// Above this many changed characters (after trimming the common prefix and suffix), a text
/// replacement is written as one splice of the changed middle rather than diffed.
///
/// Automerge's `update_text` runs Myers' diff without a deadline: O((N+M)·D) over grapheme
/// clusters, so pasting a long, entirely different body would stall the calling (UI) thread for
/// seconds. A middle this short diffs in well under a millisecond; beyond it, the user replaced a
/// large block anyway, and a splice of that block merges just as safely: Automerge deletes only
/// the characters this device saw, so concurrent insertions elsewhere (and inside the block)
/// survive either way.
pub(crate) const MAX_DIFF_CHARS: usize = 4096;

/// Makes the Text object `text` hold `value` by the smallest edit: `update_text` (a Myers diff),
/// so a replacement becomes inserts and deletes of just the changed characters and merges
/// character-wise with concurrent edits. Writes nothing when the text is already `value`.
///
/// Assumes the document indexes text by Unicode scalar value (see [`super::TEXT_ENCODING`]).
pub(crate) fn update_text<T: Transactable>(
    tx: &mut T,
    text: &ObjId,
    value: &str,
) -> Result<(), AutomergeError> {
    let old = tx.text(text)?;
    if old == value {
        return Ok(());
    }
    let old_chars: Vec<char> = old.chars().collect();
    let new_chars: Vec<char> = value.chars().collect();
    let prefix = old_chars
        .iter()
        .zip(&new_chars)
        .take_while(|(a, b)| a == b)
        .count();
    let suffix = old_chars[prefix..]
        .iter()
        .rev()
        .zip(new_chars[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let old_middle = old_chars.len() - prefix - suffix;
    let new_middle = &new_chars[prefix..new_chars.len() - suffix];
    if old_middle + new_middle.len() <= MAX_DIFF_CHARS {
        return tx.update_text(text, value);
    }
    let inserted: String = new_middle.iter().collect();
    // `old_middle` is at most the text's length, far below isize::MAX.
    let delete = isize::try_from(old_middle).unwrap_or(isize::MAX);
    tx.splice_text(text, prefix, delete, &inserted)
}

/// Replaces a list of strings, only when it differs.
pub(crate) fn put_str_list<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    values: &[String],
) -> Result<(), AutomergeError> {
    if current_str_list(tx, obj, key)?.as_deref() == Some(values) {
        return Ok(());
    }
    let list = tx.put_object(obj, key, ObjType::List)?;
    for (index, value) in values.iter().enumerate() {
        tx.insert(&list, index, value.as_str())?;
    }
    Ok(())
}

/// Above this many cells (old length × new length), [`reconcile_str_list`] replaces the list
/// instead of aligning it, so a list bloated by a malformed or hostile document cannot make the
/// alignment quadratic in memory.
const MAX_LIST_ALIGNMENT_CELLS: usize = 1 << 16;

/// Makes the list of strings under `key` equal to `values` by editing it in place: items both
/// lists share (a longest common subsequence) are kept, the others deleted or inserted. Unlike
/// [`put_str_list`], concurrent edits on two devices then merge item-wise (one adds a tag, the
/// other removes another: both happen) instead of one device's whole list winning.
pub(crate) fn reconcile_str_list<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    values: &[String],
) -> Result<(), AutomergeError> {
    let list = match tx.get_all(obj, key)?.as_slice() {
        [(Value::Object(ObjType::List), id)] => id.clone(),
        _ => return put_str_list(tx, obj, key, values),
    };
    let mut old: Vec<Option<String>> = Vec::with_capacity(tx.length(&list));
    for index in 0..tx.length(&list) {
        old.push(match tx.get(&list, index)? {
            Some((Value::Scalar(scalar), _)) => match scalar.as_ref() {
                ScalarValue::Str(text) => Some(text.to_string()),
                _ => None,
            },
            _ => None,
        });
    }
    if old
        .iter()
        .map(|item| item.as_deref())
        .eq(values.iter().map(|value| Some(value.as_str())))
    {
        return Ok(());
    }
    if old.len().saturating_mul(values.len()) > MAX_LIST_ALIGNMENT_CELLS {
        let list = tx.put_object(obj, key, ObjType::List)?;
        for (index, value) in values.iter().enumerate() {
            tx.insert(&list, index, value.as_str())?;
        }
        return Ok(());
    }
    // lcs[i][j]: length of the longest common subsequence of old[i..] and values[j..].
    let width = values.len() + 1;
    let mut lcs = vec![0usize; (old.len() + 1) * width];
    for i in (0..old.len()).rev() {
        for j in (0..values.len()).rev() {
            lcs[i * width + j] = if old[i].as_deref() == Some(values[j].as_str()) {
                lcs[(i + 1) * width + j + 1] + 1
            } else {
                lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
            };
        }
    }
    // Walk the table forwards, editing at `pos`, the index in the list as edited so far.
    let (mut i, mut j, mut pos) = (0, 0, 0);
    while i < old.len() || j < values.len() {
        if i < old.len() && j < values.len() && old[i].as_deref() == Some(values[j].as_str()) {
            i += 1;
            j += 1;
            pos += 1;
        } else if j < values.len()
            && (i == old.len() || lcs[i * width + j + 1] >= lcs[(i + 1) * width + j])
        {
            tx.insert(&list, pos, values[j].as_str())?;
            j += 1;
            pos += 1;
        } else {
            tx.delete(&list, pos)?;
            i += 1;
        }
    }
    Ok(())
}

/// The map under `key`, created if absent or if the key holds something else.
pub(crate) fn ensure_map<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
) -> Result<ObjId, AutomergeError> {
    ensure_object(tx, obj, key, ObjType::Map)
}

/// The list under `key`, created if absent or if the key holds something else.
pub(crate) fn ensure_list<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
) -> Result<ObjId, AutomergeError> {
    ensure_object(tx, obj, key, ObjType::List)
}

fn ensure_object<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    obj_type: ObjType,
) -> Result<ObjId, AutomergeError> {
    match tx.get_all(obj, key)?.as_slice() {
        [(Value::Object(found), id)] if *found == obj_type => Ok(id.clone()),
        _ => tx.put_object(obj, key, obj_type),
    }
}

/// Makes `list` hold one map per item, reconciling items in place by position: an edit to one
/// item touches only that item's changed fields.
pub(crate) fn reconcile_list_of_maps<T, I, F>(
    tx: &mut T,
    list: &ObjId,
    items: &[I],
    mut reconcile_item: F,
) -> Result<(), AutomergeError>
where
    T: Transactable,
    F: FnMut(&mut T, &ObjId, &I) -> Result<(), AutomergeError>,
{
    let old_len = tx.length(list);
    // Remove surplus items from the end first, so the indices below stay valid.
    for index in (items.len()..old_len).rev() {
        tx.delete(list, index)?;
    }
    for (index, item) in items.iter().enumerate() {
        let map = if index < old_len {
            match tx.get(list, index)? {
                Some((Value::Object(ObjType::Map), id)) => id,
                _ => tx.put_object(list, index, ObjType::Map)?,
            }
        } else {
            tx.insert_object(list, index, ObjType::Map)?
        };
        reconcile_item(tx, &map, item)?;
    }
    Ok(())
}

/// Deletes every key of `obj` that `keep` refuses.
pub(crate) fn retain_keys<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    mut keep: impl FnMut(&str) -> bool,
) -> Result<(), AutomergeError> {
    let doomed: Vec<String> = tx.keys(obj).filter(|key| !keep(key)).collect();
    for key in doomed {
        tx.delete(obj, key.as_str())?;
    }
    Ok(())
}

/// The key's value if it is a single, unconflicted scalar.
fn current_scalar<T: ReadDoc>(
    doc: &T,
    obj: &ObjId,
    key: &str,
) -> Result<Option<ScalarValue>, AutomergeError> {
    Ok(match doc.get_all(obj, key)?.as_slice() {
        [(Value::Scalar(scalar), _)] => Some(scalar.clone().into_owned()),
        _ => None,
    })
}

/// The key's value if it is a single, unconflicted list of strings.
fn current_str_list<T: ReadDoc>(
    doc: &T,
    obj: &ObjId,
    key: &str,
) -> Result<Option<Vec<String>>, AutomergeError> {
    let list = match doc.get_all(obj, key)?.as_slice() {
        [(Value::Object(ObjType::List), id)] => id.clone(),
        _ => return Ok(None),
    };
    let mut values = Vec::with_capacity(doc.length(&list));
    for index in 0..doc.length(&list) {
        match doc.get(&list, index)? {
            Some((Value::Scalar(scalar), _)) => match scalar.as_ref() {
                ScalarValue::Str(text) => values.push(text.to_string()),
                _ => return Ok(None),
            },
            _ => return Ok(None),
        }
    }
    Ok(Some(values))
}

/// Parses a map key that holds an id: only the canonical lowercase hex form, so one id has
/// exactly one key.
pub(crate) fn parse_id_key<const N: usize>(key: &str) -> Option<haven_protocol::Bytes<N>> {
    haven_protocol::Bytes::<N>::from_hex(key).filter(|id| id.to_hex() == key)
}

/// A slug (`[a-z0-9-]`, 1 to 100 characters), as public content names articles and lists.
pub(crate) fn is_slug(text: &str) -> bool {
    (1..=100).contains(&text.len())
        && text
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
}

/// Rejects a value longer than `max` characters (Unicode scalar values).
pub(crate) fn check_len(field: &str, value: &str, max: usize) -> Result<(), DocumentError> {
    let count = value.chars().count();
    if count > max {
        return Err(DocumentError::Invalid {
            field: field.to_owned(),
            reason: format!("{count} characters, at most {max} allowed"),
        });
    }
    Ok(())
}

/// Item-level problems met while reading a collection. A strict read stops at the first one; a
/// lossy read skips the item and keeps going, so one bad item (written by a buggy or newer client)
/// cannot hide everything else in a singleton.
pub(crate) struct Issues {
    lossy: bool,
    found: Vec<DocumentError>,
}

impl Issues {
    pub(crate) fn new(lossy: bool) -> Self {
        Self {
            lossy,
            found: Vec::new(),
        }
    }

    /// The item, `None` if it is skipped, or the error of a strict read.
    pub(crate) fn take<T>(
        &mut self,
        result: Result<T, DocumentError>,
    ) -> Result<Option<T>, DocumentError> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(error) if self.lossy => {
                self.found.push(error);
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    pub(crate) fn into_found(self) -> Vec<DocumentError> {
        self.found
    }
}
