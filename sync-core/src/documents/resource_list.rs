//! A list of hotlines and services for a region (public space).

use automerge::transaction::Transactable;
use automerge::{AutomergeError, ObjId, ROOT, ReadDoc};

use super::fields::{self, MapReader};
use super::{DocType, Document, DocumentError};

/// A public resource list: the services of one region, country, campus or city.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceList {
    /// Stable name, `[a-z0-9-]`; also the source file's stem.
    pub slug: String,
    pub title: String,
    /// ISO 3166-1 alpha-2 (`US`), `campus:<name>` or `city:<name>`.
    pub region: String,
    pub resources: Vec<Resource>,
}

/// One service. Facts here must be right: each carries where it was checked and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub name: String,
    pub description: String,
    /// E.164, for example `+18006564673`.
    pub phone: Option<String>,
    /// How to text the service, in words ("Text HOME to 741741").
    pub sms: Option<String>,
    /// `https://` URL of an online chat.
    pub chat_url: Option<String>,
    /// `https://` URL of the service's site.
    pub url: String,
    /// Human-readable opening hours.
    pub hours: String,
    /// Only for services that really answer around the clock.
    pub is_24_7: bool,
    /// BCP 47 language tags.
    pub languages: Vec<String>,
    pub categories: Vec<String>,
    /// Where the facts were checked.
    pub source_url: String,
    /// The date they were checked, `YYYY-MM-DD`.
    pub verified_at: String,
}

const SLUG: &str = "slug";
const TITLE: &str = "title";
const REGION: &str = "region";
const RESOURCES: &str = "resources";

const NAME: &str = "name";
const DESCRIPTION: &str = "description";
const PHONE: &str = "phone";
const SMS: &str = "sms";
const CHAT_URL: &str = "chat_url";
const URL: &str = "url";
const HOURS: &str = "hours";
const IS_24_7: &str = "is_24_7";
const LANGUAGES: &str = "languages";
const CATEGORIES: &str = "categories";
const SOURCE_URL: &str = "source_url";
const VERIFIED_AT: &str = "verified_at";

impl Document for ResourceList {
    const TYPE: DocType = DocType::ResourceList;

    fn hydrate<D: ReadDoc>(doc: &D) -> Result<Self, DocumentError> {
        let root = MapReader::root(doc);
        fields::check_header(&root, Self::TYPE)?;
        Ok(Self {
            slug: root.str(SLUG)?,
            title: root.str(TITLE)?,
            region: root.str(REGION)?,
            resources: root
                .list_of_maps(RESOURCES)?
                .iter()
                .map(Resource::hydrate)
                .collect::<Result<_, _>>()?,
        })
    }

    fn reconcile<T: Transactable>(&self, tx: &mut T) -> Result<(), DocumentError> {
        fields::write_header(tx, Self::TYPE)?;
        fields::put_str(tx, &ROOT, SLUG, &self.slug)?;
        fields::put_str(tx, &ROOT, TITLE, &self.title)?;
        fields::put_str(tx, &ROOT, REGION, &self.region)?;
        let list = fields::ensure_list(tx, &ROOT, RESOURCES)?;
        fields::reconcile_list_of_maps(tx, &list, &self.resources, |tx, map, resource| {
            resource.reconcile(tx, map)
        })?;
        Ok(())
    }
}

impl Resource {
    fn hydrate<D: ReadDoc>(map: &MapReader<'_, D>) -> Result<Self, DocumentError> {
        Ok(Self {
            name: map.str(NAME)?,
            description: map.str(DESCRIPTION)?,
            phone: map.opt_str(PHONE)?,
            sms: map.opt_str(SMS)?,
            chat_url: map.opt_str(CHAT_URL)?,
            url: map.str(URL)?,
            hours: map.str(HOURS)?,
            is_24_7: map.bool(IS_24_7)?,
            languages: map.str_list(LANGUAGES)?,
            categories: map.str_list(CATEGORIES)?,
            source_url: map.str(SOURCE_URL)?,
            verified_at: map.str(VERIFIED_AT)?,
        })
    }

    fn reconcile<T: Transactable>(&self, tx: &mut T, map: &ObjId) -> Result<(), AutomergeError> {
        fields::put_str(tx, map, NAME, &self.name)?;
        fields::put_str(tx, map, DESCRIPTION, &self.description)?;
        fields::put_opt_str(tx, map, PHONE, self.phone.as_deref())?;
        fields::put_opt_str(tx, map, SMS, self.sms.as_deref())?;
        fields::put_opt_str(tx, map, CHAT_URL, self.chat_url.as_deref())?;
        fields::put_str(tx, map, URL, &self.url)?;
        fields::put_str(tx, map, HOURS, &self.hours)?;
        fields::put_bool(tx, map, IS_24_7, self.is_24_7)?;
        fields::put_str_list(tx, map, LANGUAGES, &self.languages)?;
        fields::put_str_list(tx, map, CATEGORIES, &self.categories)?;
        fields::put_str(tx, map, SOURCE_URL, &self.source_url)?;
        fields::put_str(tx, map, VERIFIED_AT, &self.verified_at)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::AutoCommit;

    fn resource(name: &str) -> Resource {
        Resource {
            name: name.into(),
            description: "Free, confidential support.".into(),
            phone: Some("+18006564673".into()),
            sms: None,
            chat_url: Some("https://hotline.example.org/chat".into()),
            url: "https://example.org".into(),
            hours: "24/7".into(),
            is_24_7: true,
            languages: vec!["en".into(), "es".into()],
            categories: vec!["hotline".into()],
            source_url: "https://example.org/about".into(),
            verified_at: "2025-01-15".into(),
        }
    }

    fn sample() -> ResourceList {
        ResourceList {
            slug: "us-national".into(),
            title: "National services".into(),
            region: "US".into(),
            resources: vec![resource("A"), resource("B"), resource("C")],
        }
    }

    fn write(list: &ResourceList) -> AutoCommit {
        let mut doc = AutoCommit::new();
        list.reconcile(&mut doc).unwrap();
        doc.commit();
        doc
    }

    #[test]
    fn round_trips_and_is_idempotent() {
        let list = sample();
        let mut doc = write(&list);
        assert_eq!(ResourceList::hydrate(&doc).unwrap(), list);
        list.reconcile(&mut doc).unwrap();
        assert_eq!(doc.pending_ops(), 0);
    }

    #[test]
    fn editing_one_resource_touches_only_it() {
        let mut list = sample();
        let mut doc = write(&list);
        list.resources[1].phone = None;
        list.resources[1].hours = "Weekdays 9-17".into();
        list.reconcile(&mut doc).unwrap();
        assert_eq!(doc.pending_ops(), 2);
        assert_eq!(ResourceList::hydrate(&doc).unwrap(), list);
    }

    #[test]
    fn growing_and_shrinking_the_list() {
        let mut list = sample();
        let mut doc = write(&list);
        list.resources.remove(0);
        list.reconcile(&mut doc).unwrap();
        assert_eq!(ResourceList::hydrate(&doc).unwrap(), list);
        list.resources.push(resource("D"));
        list.resources.push(resource("E"));
        list.reconcile(&mut doc).unwrap();
        assert_eq!(ResourceList::hydrate(&doc).unwrap(), list);
        list.resources.clear();
        list.reconcile(&mut doc).unwrap();
        assert_eq!(ResourceList::hydrate(&doc).unwrap(), list);
    }

    #[test]
    fn malformed_resource_names_the_field() {
        let mut doc = write(&sample());
        let (_, list) = doc.get(ROOT, RESOURCES).unwrap().unwrap();
        let (_, second) = doc.get(&list, 1).unwrap().unwrap();
        doc.put(&second, PHONE, 42).unwrap();
        assert_eq!(
            ResourceList::hydrate(&doc).unwrap_err().field(),
            Some("resources[1].phone")
        );
        doc.put(&second, PHONE, "+18006564673").unwrap();
        doc.put(&list, 2, "not a map").unwrap();
        assert_eq!(
            ResourceList::hydrate(&doc).unwrap_err().field(),
            Some("resources[2]")
        );
    }
}
