//! Saved resources: a per-account singleton of the public resources a person saved and of their
//! personal trusted contacts.
//!
//! Layout (root map; both collections come from the genesis change):
//!
//! | key | Automerge type | meaning |
//! |---|---|---|
//! | `schema`, `type` | uint, str | 1, `saved_resources` |
//! | `resources` | map: `<list slug>/<resource name>` → timestamp | saved public resources → `saved_at` (ms) |
//! | `contacts` | map: contact id (32 lowercase hex) → map | trusted contacts |
//! | `contacts.<id>` | map {`name`: str, `phone`: str, `note`: str, absent when none} | |
//!
//! Everything is keyed, never listed, so the same resource saved on two devices offline appears
//! once, and contacts added on two devices both survive. A slug never contains `/`, so the first
//! `/` of a resource key separates the slug from the name. Removing and concurrently saving the
//! same resource keeps it (the save was not seen by the removal). A contact's fields are written
//! one by one, so two devices editing different fields of one contact both keep their edit.

use std::collections::BTreeMap;
use std::fmt;

use automerge::transaction::Transactable;
use automerge::{ChangeHash, ObjType, ROOT, ReadDoc, Value};
use haven_protocol::Bytes;

use super::fields::{self, Issues, MapReader};
use super::{DocHandle, DocType, Document, DocumentError, SingletonDocument};
use crate::env::{Random, random_array};

/// Saved resources and trusted contacts, as plain data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedResources {
    /// Sorted by list slug, then resource name.
    pub resources: Vec<SavedResource>,
    /// Sorted by id.
    pub contacts: Vec<TrustedContact>,
}

/// A public resource the person saved, named by its list and its name in that list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedResource {
    /// The resource list's slug (`[a-z0-9-]`).
    pub list_slug: String,
    /// The resource's `name` in that list.
    pub resource_name: String,
    /// Milliseconds since the Unix epoch; after concurrent saves, the earliest.
    pub saved_at: i64,
}

/// A random id, so contacts added on different devices never collide.
pub type ContactId = Bytes<16>;

/// Someone the person trusts and may want to reach quickly.
///
/// `Debug` hides the name, phone and note: who a survivor trusts is sensitive.
#[derive(Clone, PartialEq, Eq)]
pub struct TrustedContact {
    pub id: ContactId,
    pub name: String,
    /// As the person typed it; not necessarily E.164.
    pub phone: String,
    pub note: Option<String>,
}

/// The longest resource name, in Unicode scalar values.
pub const MAX_RESOURCE_NAME_CHARS: usize = 200;
/// The longest contact name, in Unicode scalar values.
pub const MAX_CONTACT_NAME_CHARS: usize = 100;
/// The longest contact phone, in Unicode scalar values.
pub const MAX_CONTACT_PHONE_CHARS: usize = 40;
/// The longest contact note, in Unicode scalar values.
pub const MAX_CONTACT_NOTE_CHARS: usize = 1000;

const RESOURCES: &str = "resources";
const CONTACTS: &str = "contacts";
const NAME: &str = "name";
const PHONE: &str = "phone";
const NOTE: &str = "note";

/// Saved resources open for editing.
pub type SavedResourcesDoc = DocHandle<SavedResources>;

/// A fresh contact id.
pub fn new_contact_id(random: &dyn Random) -> ContactId {
    Bytes(random_array(random))
}

impl SavedResources {
    /// Whether the resource is saved.
    pub fn is_saved(&self, list_slug: &str, resource_name: &str) -> bool {
        self.resources
            .iter()
            .any(|saved| saved.list_slug == list_slug && saved.resource_name == resource_name)
    }

    /// The contact with this id.
    pub fn contact(&self, id: &ContactId) -> Option<&TrustedContact> {
        self.contacts.iter().find(|contact| contact.id == *id)
    }

    /// Reads, skipping (and returning) malformed items instead of failing on the first one.
    pub fn hydrate_lossy<D: ReadDoc>(doc: &D) -> Result<(Self, Vec<DocumentError>), DocumentError> {
        read(doc, Issues::new(true))
    }
}

impl SingletonDocument for SavedResources {
    const ROOT_COLLECTIONS: &'static [&'static str] = &[RESOURCES, CONTACTS];
}

impl Document for SavedResources {
    const TYPE: DocType = DocType::SavedResources;

    fn hydrate<D: ReadDoc>(doc: &D) -> Result<Self, DocumentError> {
        read(doc, Issues::new(false)).map(|(saved, _)| saved)
    }

    fn reconcile<T: Transactable>(&self, tx: &mut T) -> Result<(), DocumentError> {
        fields::write_header(tx, Self::TYPE)?;
        let resources = fields::ensure_map(tx, &ROOT, RESOURCES)?;
        let keys: BTreeMap<String, i64> = self
            .resources
            .iter()
            .map(|saved| {
                let key = resource_key(&saved.list_slug, &saved.resource_name);
                (key, saved.saved_at)
            })
            .collect();
        fields::retain_keys(tx, &resources, |key| keys.contains_key(key))?;
        for (key, saved_at) in &keys {
            fields::put_timestamp(tx, &resources, key, *saved_at)?;
        }
        let contacts = fields::ensure_map(tx, &ROOT, CONTACTS)?;
        fields::retain_keys(tx, &contacts, |key| {
            fields::parse_id_key::<16>(key).is_some_and(|id| self.contact(&id).is_some())
        })?;
        for contact in &self.contacts {
            let map = fields::ensure_map(tx, &contacts, &contact.id.to_hex())?;
            write_contact(tx, &map, contact)?;
        }
        Ok(())
    }
}

fn read<D: ReadDoc>(
    doc: &D,
    mut issues: Issues,
) -> Result<(SavedResources, Vec<DocumentError>), DocumentError> {
    let root = MapReader::root(doc);
    fields::check_header(&root, DocType::SavedResources)?;
    let mut resources = Vec::new();
    if let Some(map) = issues.take(root.map(RESOURCES))? {
        for key in map.keys() {
            let item = parse_resource_key(&key)
                .ok_or_else(|| DocumentError::Invalid {
                    field: map.field(&key),
                    reason: "key is not `<list slug>/<resource name>`".to_owned(),
                })
                .and_then(|(slug, name)| {
                    Ok(SavedResource {
                        list_slug: slug.to_owned(),
                        resource_name: name.to_owned(),
                        saved_at: map.earliest_timestamp(&key)?,
                    })
                });
            if let Some(saved) = issues.take(item)? {
                resources.push(saved);
            }
        }
    }
    resources
        .sort_by(|a, b| (&a.list_slug, &a.resource_name).cmp(&(&b.list_slug, &b.resource_name)));
    let mut contacts = Vec::new();
    if let Some(map) = issues.take(root.map(CONTACTS))? {
        for key in map.keys() {
            let item = fields::parse_id_key::<16>(&key)
                .ok_or_else(|| DocumentError::Invalid {
                    field: map.field(&key),
                    reason: "key is not a contact id (32 lowercase hex characters)".to_owned(),
                })
                .and_then(|id| {
                    let contact = map.map(&key)?;
                    Ok(TrustedContact {
                        id,
                        name: contact.str(NAME)?,
                        phone: contact.str(PHONE)?,
                        note: contact.opt_str(NOTE)?,
                    })
                });
            if let Some(contact) = issues.take(item)? {
                contacts.push(contact);
            }
        }
    }
    // Keys are canonical hex, so Automerge's key order is id order already; sort regardless.
    contacts.sort_by_key(|contact| contact.id);
    Ok((
        SavedResources {
            resources,
            contacts,
        },
        issues.into_found(),
    ))
}

fn resource_key(list_slug: &str, resource_name: &str) -> String {
    format!("{list_slug}/{resource_name}")
}

fn parse_resource_key(key: &str) -> Option<(&str, &str)> {
    let (slug, name) = key.split_once('/')?;
    (fields::is_slug(slug) && !name.is_empty()).then_some((slug, name))
}

fn write_contact<T: Transactable>(
    tx: &mut T,
    map: &automerge::ObjId,
    contact: &TrustedContact,
) -> Result<(), automerge::AutomergeError> {
    fields::put_str(tx, map, NAME, &contact.name)?;
    fields::put_str(tx, map, PHONE, &contact.phone)?;
    fields::put_opt_str(tx, map, NOTE, contact.note.as_deref())
}

fn check_resource(list_slug: &str, resource_name: &str) -> Result<(), DocumentError> {
    if !fields::is_slug(list_slug) {
        return Err(DocumentError::Invalid {
            field: RESOURCES.to_owned(),
            reason: "the list slug is not a slug ([a-z0-9-], 1 to 100 characters)".to_owned(),
        });
    }
    if resource_name.is_empty() {
        return Err(DocumentError::Invalid {
            field: RESOURCES.to_owned(),
            reason: "empty resource name".to_owned(),
        });
    }
    fields::check_len(RESOURCES, resource_name, MAX_RESOURCE_NAME_CHARS)
}

impl DocHandle<SavedResources> {
    /// Saves a public resource. Saving a saved resource changes nothing.
    pub fn save_resource(
        &mut self,
        list_slug: &str,
        resource_name: &str,
        now_ms: i64,
    ) -> Result<Option<ChangeHash>, DocumentError> {
        check_resource(list_slug, resource_name)?;
        let key = resource_key(list_slug, resource_name);
        self.edit(now_ms, "resources.save", |doc| {
            let resources = MapReader::root(&*doc).map(RESOURCES)?.id().clone();
            if doc.get(&resources, key.as_str())?.is_none() {
                fields::put_timestamp(doc, &resources, &key, now_ms)?;
            }
            Ok(())
        })
    }

    /// Removes a saved resource; removing one that is not saved changes nothing.
    pub fn remove_resource(
        &mut self,
        list_slug: &str,
        resource_name: &str,
        now_ms: i64,
    ) -> Result<Option<ChangeHash>, DocumentError> {
        let key = resource_key(list_slug, resource_name);
        self.edit(now_ms, "resources.remove", |doc| {
            let resources = MapReader::root(&*doc).map(RESOURCES)?.id().clone();
            if doc.get(&resources, key.as_str())?.is_some() {
                doc.delete(&resources, key.as_str())?;
            }
            Ok(())
        })
    }

    /// Adds a trusted contact, or updates the one with the same id field by field. The name must
    /// not be blank.
    pub fn put_contact(
        &mut self,
        contact: &TrustedContact,
        now_ms: i64,
    ) -> Result<Option<ChangeHash>, DocumentError> {
        let field = format!("{CONTACTS}.{}", contact.id.to_hex());
        if contact.name.trim().is_empty() {
            return Err(DocumentError::Invalid {
                field: format!("{field}.{NAME}"),
                reason: "blank name".to_owned(),
            });
        }
        fields::check_len(
            &format!("{field}.{NAME}"),
            &contact.name,
            MAX_CONTACT_NAME_CHARS,
        )?;
        fields::check_len(
            &format!("{field}.{PHONE}"),
            &contact.phone,
            MAX_CONTACT_PHONE_CHARS,
        )?;
        if let Some(note) = &contact.note {
            fields::check_len(&format!("{field}.{NOTE}"), note, MAX_CONTACT_NOTE_CHARS)?;
        }
        let key = contact.id.to_hex();
        self.edit(now_ms, "contacts.put", |doc| {
            let contacts = MapReader::root(&*doc).map(CONTACTS)?.id().clone();
            let map = match doc.get(&contacts, key.as_str())? {
                Some((Value::Object(ObjType::Map), map)) => map,
                _ => doc.put_object(&contacts, key.as_str(), ObjType::Map)?,
            };
            write_contact(doc, &map, contact)?;
            Ok(())
        })
    }

    /// Removes a trusted contact; removing an unknown one changes nothing. A concurrent edit of
    /// the same contact on another device does not bring it back.
    pub fn remove_contact(
        &mut self,
        id: &ContactId,
        now_ms: i64,
    ) -> Result<Option<ChangeHash>, DocumentError> {
        let key = id.to_hex();
        self.edit(now_ms, "contacts.remove", |doc| {
            let contacts = MapReader::root(&*doc).map(CONTACTS)?.id().clone();
            if doc.get(&contacts, key.as_str())?.is_some() {
                doc.delete(&contacts, key.as_str())?;
            }
            Ok(())
        })
    }
}

impl fmt::Debug for TrustedContact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrustedContact")
            .field("id", &self.id)
            .field("has_note", &self.note.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::SeededRandom;
    use haven_protocol::DeviceId;

    const T0: i64 = 1_750_000_000_000;

    fn device(n: u8) -> DeviceId {
        Bytes([n; 16])
    }

    fn contact(id: ContactId, name: &str) -> TrustedContact {
        TrustedContact {
            id,
            name: name.to_owned(),
            phone: "+44 20 7946 0000".to_owned(),
            note: Some("call after 6".to_owned()),
        }
    }

    fn exchange(a: &mut SavedResourcesDoc, b: &mut SavedResourcesDoc) {
        let from_a = a.doc_mut().get_changes(&[]);
        let from_b = b.doc_mut().get_changes(&[]);
        a.doc_mut().apply_changes(from_b).unwrap();
        b.doc_mut().apply_changes(from_a).unwrap();
        assert_eq!(a.heads(), b.heads());
        assert_eq!(a.read().unwrap(), b.read().unwrap());
    }

    #[test]
    fn save_remove_and_contacts() {
        let random = SeededRandom::new(7);
        let mut doc = SavedResourcesDoc::new(&device(1)).unwrap();
        doc.save_resource("us-national", "RAINN / hotline", T0)
            .unwrap();
        doc.save_resource("gb-national", "Rape Crisis", T0 + 1)
            .unwrap();
        assert_eq!(
            doc.save_resource("us-national", "RAINN / hotline", T0 + 2)
                .unwrap(),
            None
        );
        doc.remove_resource("gb-national", "Rape Crisis", T0 + 3)
            .unwrap();
        assert_eq!(
            doc.remove_resource("gb-national", "Rape Crisis", T0 + 3)
                .unwrap(),
            None
        );
        let (x, y) = (new_contact_id(&random), new_contact_id(&random));
        assert_ne!(x, y);
        doc.put_contact(&contact(x, "Sam"), T0 + 4).unwrap();
        doc.put_contact(&contact(y, "Alex"), T0 + 5).unwrap();
        let mut sam = contact(x, "Sam R.");
        sam.note = None;
        doc.put_contact(&sam, T0 + 6).unwrap();
        assert_eq!(doc.put_contact(&sam, T0 + 7).unwrap(), None);
        doc.remove_contact(&y, T0 + 8).unwrap();

        let saved = doc.read().unwrap();
        assert_eq!(
            saved.resources,
            [SavedResource {
                list_slug: "us-national".into(),
                resource_name: "RAINN / hotline".into(),
                saved_at: T0
            }]
        );
        assert!(saved.is_saved("us-national", "RAINN / hotline"));
        assert_eq!(saved.contacts, [sam.clone()]);
        assert_eq!(saved.contact(&x), Some(&sam));
        let loaded = SavedResourcesDoc::load(&doc.doc_mut().save(), &device(2)).unwrap();
        assert_eq!(loaded.read().unwrap(), saved);
    }

    #[test]
    fn invalid_input_is_refused() {
        let mut doc = SavedResourcesDoc::new(&device(1)).unwrap();
        assert!(doc.save_resource("Not A Slug", "x", T0).is_err());
        assert!(doc.save_resource("a/b", "x", T0).is_err());
        assert!(doc.save_resource("ok", "", T0).is_err());
        let id = Bytes([1; 16]);
        let err = doc.put_contact(&contact(id, "  "), T0).unwrap_err();
        assert_eq!(
            err.field(),
            Some(format!("contacts.{}.name", id.to_hex()).as_str())
        );
        let mut long = contact(id, "Sam");
        long.phone = "1".repeat(MAX_CONTACT_PHONE_CHARS + 1);
        assert!(doc.put_contact(&long, T0).is_err());
        assert_eq!(doc.history().len(), 1);
    }

    #[test]
    fn concurrent_saves_merge_without_duplicates() {
        let mut a = SavedResourcesDoc::new(&device(1)).unwrap();
        let mut b = SavedResourcesDoc::new(&device(2)).unwrap();
        a.save_resource("us-national", "RAINN", T0 + 5).unwrap();
        b.save_resource("us-national", "RAINN", T0 + 2).unwrap();
        a.put_contact(&contact(Bytes([1; 16]), "Sam"), T0).unwrap();
        b.put_contact(&contact(Bytes([2; 16]), "Alex"), T0).unwrap();
        exchange(&mut a, &mut b);
        let saved = a.read().unwrap();
        assert_eq!(saved.resources.len(), 1);
        assert_eq!(saved.resources[0].saved_at, T0 + 2);
        assert_eq!(saved.contacts.len(), 2);
    }

    #[test]
    fn concurrent_field_edits_of_one_contact_both_stay() {
        let mut a = SavedResourcesDoc::new(&device(1)).unwrap();
        let id = Bytes([1; 16]);
        a.put_contact(&contact(id, "Sam"), T0).unwrap();
        let mut b = SavedResourcesDoc::load(&a.doc_mut().save(), &device(2)).unwrap();
        let mut renamed = contact(id, "Samira");
        a.put_contact(&renamed, T0 + 1).unwrap();
        let mut new_phone = contact(id, "Sam");
        new_phone.phone = "+44 20 7946 0999".into();
        b.put_contact(&new_phone, T0 + 1).unwrap();
        exchange(&mut a, &mut b);
        renamed.phone = new_phone.phone;
        assert_eq!(a.read().unwrap().contacts, [renamed]);
    }

    #[test]
    fn malformed_documents_name_the_field() {
        let mut doc = SavedResourcesDoc::new(&device(1)).unwrap();
        doc.save_resource("us", "A", T0).unwrap();
        let id = Bytes([3; 16]);
        doc.put_contact(&contact(id, "Sam"), T0).unwrap();
        let mut raw = doc.into_doc();
        let (_, resources) = raw.get(ROOT, RESOURCES).unwrap().unwrap();
        raw.put(&resources, "no-slash", T0).unwrap();
        assert_eq!(
            SavedResources::hydrate(&raw).unwrap_err().field(),
            Some("resources.no-slash")
        );
        raw.delete(&resources, "no-slash").unwrap();
        raw.put(&resources, "us/A", "yesterday").unwrap();
        assert_eq!(
            SavedResources::hydrate(&raw).unwrap_err().field(),
            Some("resources.us/A")
        );
        raw.put(&resources, "us/A", T0).unwrap();
        let (_, contacts) = raw.get(ROOT, CONTACTS).unwrap().unwrap();
        let (_, sam) = raw.get(&contacts, id.to_hex().as_str()).unwrap().unwrap();
        raw.delete(&sam, PHONE).unwrap();
        let field = format!("contacts.{}.phone", id.to_hex());
        assert_eq!(
            SavedResources::hydrate(&raw).unwrap_err().field(),
            Some(field.as_str())
        );
        let (saved, issues) = SavedResources::hydrate_lossy(&raw).unwrap();
        assert_eq!(saved.resources.len(), 1);
        assert!(saved.contacts.is_empty());
        assert_eq!(issues.len(), 1);
        // Editing a contact whose map was replaced by a scalar repairs it.
        raw.put(&contacts, id.to_hex().as_str(), 5).unwrap();
        raw.commit();
        let mut doc = SavedResourcesDoc::from_doc(raw).unwrap();
        doc.put_contact(&contact(id, "Sam"), T0).unwrap();
        assert_eq!(doc.read().unwrap().contacts.len(), 1);
    }

    #[test]
    fn reconcile_round_trips() {
        let value = SavedResources {
            resources: vec![
                SavedResource {
                    list_slug: "a".into(),
                    resource_name: "x/y".into(),
                    saved_at: T0,
                },
                SavedResource {
                    list_slug: "b".into(),
                    resource_name: "z".into(),
                    saved_at: T0 + 1,
                },
            ],
            contacts: vec![contact(Bytes([1; 16]), "A"), contact(Bytes([2; 16]), "B")],
        };
        let mut doc = SavedResourcesDoc::new(&device(1)).unwrap();
        doc.save_resource("c", "gone", T0).unwrap();
        doc.reconcile(&value, T0 + 2).unwrap();
        assert_eq!(doc.read().unwrap(), value);
        assert_eq!(doc.reconcile(&value, T0 + 3).unwrap(), None);
    }

    #[test]
    fn debug_hides_contacts() {
        let shown = format!("{:?}", contact(Bytes([1; 16]), "Sam"));
        assert!(!shown.contains("Sam") && !shown.contains("7946"));
    }
}
