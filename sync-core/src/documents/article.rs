//! An awareness article (public space).

use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};

use super::fields::{self, MapReader};
use super::{DocType, Document, DocumentError};

/// A public article. Its body is Markdown, kept as Automerge Text so that an edit republishes as a
/// small diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Article {
    /// Stable name, `[a-z0-9-]`; also the source file's stem.
    pub slug: String,
    pub title: String,
    pub summary: String,
    /// Markdown.
    pub body: String,
    pub author: String,
    pub tags: Vec<String>,
    /// Shown before the article opens (for example "describes assault").
    pub content_warnings: Vec<String>,
    /// BCP 47 language tag, for example `en` or `pt-BR`.
    pub language: String,
    /// Milliseconds since the Unix epoch (UTC).
    pub published_at: i64,
    /// Milliseconds since the Unix epoch (UTC).
    pub updated_at: i64,
    /// Estimated reading time, at least 1.
    pub reading_minutes: u32,
}

const SLUG: &str = "slug";
const TITLE: &str = "title";
const SUMMARY: &str = "summary";
const BODY: &str = "body";
const AUTHOR: &str = "author";
const TAGS: &str = "tags";
const CONTENT_WARNINGS: &str = "content_warnings";
const LANGUAGE: &str = "language";
const PUBLISHED_AT: &str = "published_at";
const UPDATED_AT: &str = "updated_at";
const READING_MINUTES: &str = "reading_minutes";

impl Document for Article {
    const TYPE: DocType = DocType::Article;

    fn hydrate<D: ReadDoc>(doc: &D) -> Result<Self, DocumentError> {
        let root = MapReader::root(doc);
        fields::check_header(&root, Self::TYPE)?;
        Ok(Self {
            slug: root.str(SLUG)?,
            title: root.str(TITLE)?,
            summary: root.str(SUMMARY)?,
            body: root.text(BODY)?,
            author: root.str(AUTHOR)?,
            tags: root.str_list(TAGS)?,
            content_warnings: root.str_list(CONTENT_WARNINGS)?,
            language: root.str(LANGUAGE)?,
            published_at: root.timestamp(PUBLISHED_AT)?,
            updated_at: root.timestamp(UPDATED_AT)?,
            reading_minutes: root.u32(READING_MINUTES)?,
        })
    }

    fn reconcile<T: Transactable>(&self, tx: &mut T) -> Result<(), DocumentError> {
        fields::write_header(tx, Self::TYPE)?;
        fields::put_str(tx, &ROOT, SLUG, &self.slug)?;
        fields::put_str(tx, &ROOT, TITLE, &self.title)?;
        fields::put_str(tx, &ROOT, SUMMARY, &self.summary)?;
        fields::put_text(tx, &ROOT, BODY, &self.body)?;
        fields::put_str(tx, &ROOT, AUTHOR, &self.author)?;
        fields::put_str_list(tx, &ROOT, TAGS, &self.tags)?;
        fields::put_str_list(tx, &ROOT, CONTENT_WARNINGS, &self.content_warnings)?;
        fields::put_str(tx, &ROOT, LANGUAGE, &self.language)?;
        fields::put_timestamp(tx, &ROOT, PUBLISHED_AT, self.published_at)?;
        fields::put_timestamp(tx, &ROOT, UPDATED_AT, self.updated_at)?;
        fields::put_u64(tx, &ROOT, READING_MINUTES, u64::from(self.reading_minutes))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::{AutoCommit, ObjType, ScalarValue};

    pub(crate) fn sample() -> Article {
        Article {
            slug: "what-is-consent".into(),
            title: "What is consent?".into(),
            summary: "Consent is a clear, freely given yes.".into(),
            body: "# Consent\n\nConsent can be withdrawn at any time.\n".into(),
            author: "Haven team".into(),
            tags: vec!["consent".into(), "basics".into()],
            content_warnings: vec![],
            language: "en".into(),
            published_at: 1_714_557_600_000,
            updated_at: 1_714_557_600_000,
            reading_minutes: 1,
        }
    }

    fn write(article: &Article) -> AutoCommit {
        let mut doc = AutoCommit::new();
        article.reconcile(&mut doc).unwrap();
        doc.commit();
        doc
    }

    #[test]
    fn round_trips() {
        let article = sample();
        let doc = write(&article);
        assert_eq!(Article::hydrate(&doc).unwrap(), article);
    }

    #[test]
    fn reconciling_equal_content_writes_nothing() {
        let article = sample();
        let mut doc = write(&article);
        article.reconcile(&mut doc).unwrap();
        assert_eq!(doc.pending_ops(), 0);
    }

    #[test]
    fn body_edit_is_a_small_diff() {
        let mut article = sample();
        let mut doc = write(&article);
        article.body.push_str("You can say no.\n");
        article.reconcile(&mut doc).unwrap();
        // Only the appended characters, not the whole body.
        assert_eq!(doc.pending_ops(), "You can say no.\n".chars().count());
        assert_eq!(Article::hydrate(&doc).unwrap(), article);
    }

    #[test]
    fn malformed_documents_name_the_field() {
        let mut doc = write(&sample());
        doc.put(ROOT, "title", 5).unwrap();
        let err = Article::hydrate(&doc).unwrap_err();
        assert_eq!(err.field(), Some("title"));

        let mut doc = write(&sample());
        doc.put(ROOT, "body", "plain string, not text").unwrap();
        assert_eq!(Article::hydrate(&doc).unwrap_err().field(), Some("body"));

        let mut doc = write(&sample());
        let tags = doc.put_object(ROOT, "tags", ObjType::List).unwrap();
        doc.insert(&tags, 0, "ok").unwrap();
        doc.insert(&tags, 1, 7).unwrap();
        assert_eq!(Article::hydrate(&doc).unwrap_err().field(), Some("tags[1]"));

        let mut doc = write(&sample());
        doc.delete(ROOT, "summary").unwrap();
        assert!(matches!(
            Article::hydrate(&doc).unwrap_err(),
            DocumentError::Missing { field } if field == "summary"
        ));

        let mut doc = write(&sample());
        doc.put(ROOT, "schema", ScalarValue::Uint(2)).unwrap();
        assert!(matches!(
            Article::hydrate(&doc).unwrap_err(),
            DocumentError::UnsupportedSchema { found: 2, .. }
        ));

        let mut doc = write(&sample());
        doc.put(ROOT, "type", "resource_list").unwrap();
        assert!(matches!(
            Article::hydrate(&doc).unwrap_err(),
            DocumentError::WrongDocType { .. }
        ));

        assert!(Article::hydrate(&AutoCommit::new()).is_err());
    }

    #[test]
    fn reconcile_repairs_malformed_fields() {
        let article = sample();
        let mut doc = write(&article);
        doc.put(ROOT, "body", 3).unwrap();
        doc.put_object(ROOT, "title", ObjType::Map).unwrap();
        doc.commit();
        article.reconcile(&mut doc).unwrap();
        assert_eq!(Article::hydrate(&doc).unwrap(), article);
    }
}
