//! Parsing a content directory: `articles/*.md` (TOML front matter between `+++` lines, then
//! Markdown) and `resources/*.toml`.
//!
//! Parsing is pure ([`parse_article`], [`parse_resource_list`]); only [`ContentSet::load_dir`]
//! reads files. Every error names the file and, where there is one, the field.

use std::path::Path;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use super::ContentError;
use super::datetime::{parse_date_ms, parse_rfc3339_ms, validate_date};
use crate::documents::{Article, Resource, ResourceList};

/// Words per minute used for `reading_minutes`.
const WORDS_PER_MINUTE: usize = 200;
const ARTICLES_DIR: &str = "articles";
const RESOURCES_DIR: &str = "resources";

/// The parsed content of a content directory, in a deterministic order (by file name).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentSet {
    pub articles: Vec<Article>,
    pub resource_lists: Vec<ResourceList>,
}

impl ContentSet {
    /// Reads and parses `dir/articles/*.md` and `dir/resources/*.toml`. Hidden files (a leading
    /// `.`, such as editor swap files) are ignored; any other file with the wrong extension is an
    /// error, so a misnamed article is not silently left out.
    pub fn load_dir(dir: &Path) -> Result<Self, ContentError> {
        let articles = read_sources(dir, ARTICLES_DIR, "md")?;
        let resources = read_sources(dir, RESOURCES_DIR, "toml")?;
        if articles.is_none() && resources.is_none() {
            return Err(ContentError::File {
                file: dir.display().to_string(),
                reason: format!("holds neither `{ARTICLES_DIR}/` nor `{RESOURCES_DIR}/`"),
            });
        }
        Ok(Self {
            articles: articles
                .unwrap_or_default()
                .iter()
                .map(|(file, text)| parse_article(file, text))
                .collect::<Result<_, _>>()?,
            resource_lists: resources
                .unwrap_or_default()
                .iter()
                .map(|(file, text)| parse_resource_list(file, text))
                .collect::<Result<_, _>>()?,
        })
    }

    /// The latest date the content states: the latest article `updated_at` or resource
    /// `verified_at` (a date counts from its first instant, UTC), or 0 if there is neither.
    ///
    /// Deterministic publishes (`haven content bundle`, the server's sample content) are stamped
    /// with this instead of the wall clock, so that their envelopes are a function of the content
    /// alone: rebuilding unchanged content gives the same bytes. Editors bump `updated_at` (or
    /// `verified_at`) with each substantive edit, so the stamp still says when content changed.
    pub fn latest_update_ms(&self) -> i64 {
        let articles = self.articles.iter().map(|article| article.updated_at);
        // Entries parsed by `load_dir` always have a valid date; a hand-built set might not, and
        // an unreadable date then simply does not count.
        let resources = self
            .resource_lists
            .iter()
            .flat_map(|list| &list.resources)
            .filter_map(|resource| parse_date_ms(&resource.verified_at).ok());
        articles.chain(resources).max().unwrap_or(0)
    }
}

/// The `(relative path, text)` of each file in `dir/sub`, sorted by name; `None` if `sub` is absent.
fn read_sources(
    dir: &Path,
    sub: &str,
    extension: &str,
) -> Result<Option<Vec<(String, String)>>, ContentError> {
    let path = dir.join(sub);
    let io_error = |path: &Path, source| ContentError::Io {
        path: path.display().to_string(),
        source,
    };
    let entries = match std::fs::read_dir(&path) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error(&path, error)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| io_error(&path, error))?;
        let Ok(name) = entry.file_name().into_string() else {
            return Err(ContentError::File {
                file: format!("{sub}/{}", entry.file_name().to_string_lossy()),
                reason: "file name is not UTF-8".to_owned(),
            });
        };
        if name.starts_with('.') {
            continue;
        }
        if !name.ends_with(&format!(".{extension}")) {
            return Err(ContentError::File {
                file: format!("{sub}/{name}"),
                reason: format!("`{sub}/` holds only `*.{extension}` files"),
            });
        }
        names.push(name);
    }
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let file = path.join(&name);
            let text = std::fs::read_to_string(&file).map_err(|error| io_error(&file, error))?;
            Ok((format!("{sub}/{name}"), text))
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// Parses one article. `file` is its path relative to the content directory (for example
/// `articles/what-is-consent.md`); its stem is the slug.
pub fn parse_article(file: &str, text: &str) -> Result<Article, ContentError> {
    let checker = Checker { file };
    let stem = checker.stem(".md")?;
    let (front_matter, body) = split_front_matter(text).map_err(|reason| ContentError::Syntax {
        file: file.to_owned(),
        message: reason.to_owned(),
    })?;
    // A leading newline stands for the opening `+++`, so TOML error line numbers match the file.
    let meta: ArticleFrontMatter = checker.toml(&format!("\n{front_matter}"))?;

    if let Some(slug) = &meta.slug
        && slug != stem
    {
        return Err(checker.field(
            "slug",
            format!("`{slug}` differs from the file name `{stem}`"),
        ));
    }
    checker.slug(stem)?;
    checker.non_blank("title", &meta.title)?;
    checker.non_blank("summary", &meta.summary)?;
    checker.non_blank("author", &meta.author)?;
    checker.language("language", &meta.language)?;
    checker.labels("tags", &meta.tags)?;
    checker.labels("content_warnings", &meta.content_warnings)?;
    let published_at = checker.datetime("published_at", &meta.published_at)?;
    let updated_at = match &meta.updated_at {
        Some(text) => checker.datetime("updated_at", text)?,
        None => published_at,
    };
    if updated_at < published_at {
        return Err(checker.field("updated_at", "is before published_at".to_owned()));
    }

    let body = normalise_body(body);
    if body.trim().is_empty() {
        return Err(checker.field(
            "body",
            "the article has no text after the front matter".to_owned(),
        ));
    }
    Ok(Article {
        slug: stem.to_owned(),
        title: meta.title,
        summary: meta.summary,
        reading_minutes: reading_minutes(&body),
        body,
        author: meta.author,
        tags: meta.tags,
        content_warnings: meta.content_warnings,
        language: meta.language,
        published_at,
        updated_at,
    })
}

/// Parses one resource list. `file` is its path relative to the content directory (for example
/// `resources/us-national.toml`); its stem is the slug.
pub fn parse_resource_list(file: &str, text: &str) -> Result<ResourceList, ContentError> {
    let checker = Checker { file };
    let stem = checker.stem(".toml")?;
    checker.slug(stem)?;
    let list: ResourceListFile = checker.toml(text)?;
    checker.non_blank("title", &list.title)?;
    checker.region(&list.region)?;
    if list.resources.is_empty() {
        return Err(checker.field(
            "resources",
            "a resource list needs at least one [[resources]] entry".to_owned(),
        ));
    }
    let resources = list
        .resources
        .into_iter()
        .enumerate()
        .map(|(index, entry)| checker.resource(index, entry))
        .collect::<Result<_, _>>()?;
    Ok(ResourceList {
        slug: stem.to_owned(),
        title: list.title,
        region: list.region,
        resources,
    })
}

/// `reading_minutes = ceil(words / 200)`, at least 1.
fn reading_minutes(body: &str) -> u32 {
    let words = body.split_whitespace().count();
    u32::try_from(words.div_ceil(WORDS_PER_MINUTE).max(1)).unwrap_or(u32::MAX)
}

/// Splits `+++\n<toml>\n+++\n<body>`.
fn split_front_matter(text: &str) -> Result<(&str, &str), &'static str> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or_default();
    if first.trim_end() != "+++" {
        return Err("front matter must start with a `+++` line");
    }
    let start = first.len();
    let mut offset = start;
    for line in lines {
        if line.trim_end() == "+++" {
            return Ok((&text[start..offset], &text[offset + line.len()..]));
        }
        offset += line.len();
    }
    Err("front matter has no closing `+++` line")
}

/// LF line ends, no leading blank lines, exactly one trailing newline: so an editor that adds a
/// newline or CRLFs does not republish an article.
fn normalise_body(body: &str) -> String {
    let body = body.replace("\r\n", "\n");
    let mut body = body.trim_start_matches('\n').trim_end().to_owned();
    body.push('\n');
    body
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArticleFrontMatter {
    slug: Option<String>,
    title: String,
    summary: String,
    author: String,
    #[serde(default)]
    tags: Vec<String>,
    /// Required (even if empty), so that every author decides about content warnings.
    content_warnings: Vec<String>,
    language: String,
    #[serde(deserialize_with = "datetime_text")]
    published_at: String,
    #[serde(default, deserialize_with = "optional_datetime_text")]
    updated_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceListFile {
    title: String,
    region: String,
    resources: Vec<ResourceEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceEntry {
    name: String,
    description: String,
    phone: Option<String>,
    sms: Option<String>,
    chat_url: Option<String>,
    url: String,
    hours: String,
    is_24_7: bool,
    languages: Vec<String>,
    categories: Vec<String>,
    source_url: String,
    #[serde(deserialize_with = "datetime_text")]
    verified_at: String,
}

/// Dates may be written as TOML strings (`"2025-01-15"`) or TOML date-times (`2025-01-15`); both
/// become text and are validated afterwards, with the field's name.
fn datetime_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    match toml::Value::deserialize(deserializer)? {
        toml::Value::String(text) => Ok(text),
        toml::Value::Datetime(datetime) => Ok(datetime.to_string()),
        other => Err(D::Error::custom(format!(
            "expected a date or date-time, found {}",
            other.type_str()
        ))),
    }
}

fn optional_datetime_text<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    datetime_text(deserializer).map(Some)
}

/// Field validation with errors that name the file.
struct Checker<'a> {
    file: &'a str,
}

impl Checker<'_> {
    fn field(&self, field: impl Into<String>, reason: String) -> ContentError {
        ContentError::Field {
            file: self.file.to_owned(),
            field: field.into(),
            reason,
        }
    }

    fn toml<T: serde::de::DeserializeOwned>(&self, text: &str) -> Result<T, ContentError> {
        toml::from_str(text).map_err(|error| ContentError::Syntax {
            file: self.file.to_owned(),
            message: error.to_string(),
        })
    }

    fn stem(&self, extension: &str) -> Result<&str, ContentError> {
        let name = self.file.rsplit('/').next().unwrap_or(self.file);
        name.strip_suffix(extension)
            .ok_or_else(|| ContentError::File {
                file: self.file.to_owned(),
                reason: format!("expected a `{extension}` file"),
            })
    }

    fn slug(&self, stem: &str) -> Result<(), ContentError> {
        let valid = !stem.is_empty()
            && stem.len() <= 100
            && !stem.starts_with('-')
            && !stem.ends_with('-')
            && stem
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if valid {
            Ok(())
        } else {
            Err(self.field(
                "slug",
                format!("the file name `{stem}` must be a slug: a-z, 0-9 and inner `-`"),
            ))
        }
    }

    fn non_blank(&self, field: &str, value: &str) -> Result<(), ContentError> {
        if value.trim().is_empty() {
            Err(self.field(field, "must not be empty".to_owned()))
        } else {
            Ok(())
        }
    }

    /// Tags and warnings: non-empty, no duplicates.
    fn labels(&self, field: &str, values: &[String]) -> Result<(), ContentError> {
        for (index, value) in values.iter().enumerate() {
            let name = format!("{field}[{index}]");
            self.non_blank(&name, value)?;
            if values[..index].contains(value) {
                return Err(self.field(name, format!("`{value}` is listed twice")));
            }
        }
        Ok(())
    }

    /// A BCP 47 tag in its common shape: `en`, `pt-BR`, `zh-Hant`.
    fn language(&self, field: &str, value: &str) -> Result<(), ContentError> {
        let mut parts = value.split('-');
        let primary = parts.next().unwrap_or_default();
        let valid = (2..=3).contains(&primary.len())
            && primary.bytes().all(|b| b.is_ascii_lowercase())
            && parts.all(|part| {
                (2..=8).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_alphanumeric())
            });
        if valid {
            Ok(())
        } else {
            Err(self.field(
                field,
                format!("`{value}` is not a language tag such as `en` or `pt-BR`"),
            ))
        }
    }

    fn datetime(&self, field: &str, value: &str) -> Result<i64, ContentError> {
        parse_rfc3339_ms(value).map_err(|reason| self.field(field, format!("`{value}`: {reason}")))
    }

    /// ISO 3166-1 alpha-2 in upper case, `campus:<name>` or `city:<name>`.
    fn region(&self, value: &str) -> Result<(), ContentError> {
        let named = |prefix: &str| {
            value.strip_prefix(prefix).is_some_and(|name| {
                !name.trim().is_empty()
                    && name.trim() == name
                    && !name.chars().any(char::is_control)
            })
        };
        let country = value.len() == 2 && value.bytes().all(|b| b.is_ascii_uppercase());
        if country || named("campus:") || named("city:") {
            Ok(())
        } else {
            Err(self.field(
                "region",
                format!(
                    "`{value}` is not an ISO country code (`US`), `campus:<name>` or `city:<name>`"
                ),
            ))
        }
    }

    fn https_url(&self, field: &str, value: &str) -> Result<(), ContentError> {
        let host = value.strip_prefix("https://").unwrap_or_default();
        let valid = !host.is_empty()
            && !host.starts_with('/')
            && !value.chars().any(|c| c.is_whitespace() || c.is_control());
        if valid {
            Ok(())
        } else {
            Err(self.field(field, format!("`{value}` is not an https:// URL")))
        }
    }

    fn resource(&self, index: usize, entry: ResourceEntry) -> Result<Resource, ContentError> {
        let field = |name: &str| format!("resources[{index}].{name}");
        self.non_blank(&field("name"), &entry.name)?;
        self.non_blank(&field("description"), &entry.description)?;
        self.non_blank(&field("hours"), &entry.hours)?;
        if let Some(phone) = &entry.phone
            && !is_e164(phone)
        {
            return Err(self.field(
                field("phone"),
                format!("`{phone}` is not E.164 (`+` then 8 to 15 digits, such as +18006564673)"),
            ));
        }
        if let Some(sms) = &entry.sms {
            // Free text ("Text HOME to 741741"): a keyword and a short code have no E.164 form.
            self.non_blank(&field("sms"), sms)?;
        }
        if let Some(chat_url) = &entry.chat_url {
            self.https_url(&field("chat_url"), chat_url)?;
        }
        self.https_url(&field("url"), &entry.url)?;
        self.https_url(&field("source_url"), &entry.source_url)?;
        for (position, language) in entry.languages.iter().enumerate() {
            self.language(
                &format!("resources[{index}].languages[{position}]"),
                language,
            )?;
        }
        self.labels(&field("categories"), &entry.categories)?;
        validate_date(&entry.verified_at).map_err(|reason| {
            self.field(
                field("verified_at"),
                format!("`{}`: {reason}", entry.verified_at),
            )
        })?;
        Ok(Resource {
            name: entry.name,
            description: entry.description,
            phone: entry.phone,
            sms: entry.sms,
            chat_url: entry.chat_url,
            url: entry.url,
            hours: entry.hours,
            is_24_7: entry.is_24_7,
            languages: entry.languages,
            categories: entry.categories,
            source_url: entry.source_url,
            verified_at: entry.verified_at,
        })
    }
}

/// `+` then 8 to 15 digits, the first not 0 (no country code starts with 0).
fn is_e164(value: &str) -> bool {
    value.strip_prefix('+').is_some_and(|digits| {
        (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARTICLE: &str = "+++
slug = \"what-is-consent\"
title = \"What is consent?\"
summary = \"A short guide.\"
author = \"Haven team\"
tags = [\"consent\"]
content_warnings = []
language = \"en\"
published_at = \"2024-05-01T10:00:00Z\"
updated_at = 2024-05-02T10:00:00Z
+++

# Consent

Consent is a clear yes.
";

    const RESOURCES: &str = r#"
title = "National services"
region = "US"

[[resources]]
name = "National Sexual Assault Hotline (RAINN)"
description = "Free, confidential support."
phone = "+18006564673"
chat_url = "https://hotline.rainn.org/online"
url = "https://www.rainn.org"
hours = "24/7"
is_24_7 = true
languages = ["en", "es"]
categories = ["hotline", "chat"]
source_url = "https://www.rainn.org/resources"
verified_at = 2025-01-15

[[resources]]
name = "NSVRC"
description = "Information and research."
url = "https://www.nsvrc.org"
hours = "Weekdays"
is_24_7 = false
languages = ["en"]
categories = ["organisation"]
source_url = "https://www.nsvrc.org/about"
verified_at = "2025-01-15"
"#;

    fn field_error(result: Result<impl std::fmt::Debug, ContentError>) -> (String, String) {
        match result {
            Err(ContentError::Field { file, field, .. }) => (file, field),
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn parses_an_article() {
        let article = parse_article("articles/what-is-consent.md", ARTICLE).unwrap();
        assert_eq!(article.slug, "what-is-consent");
        assert_eq!(article.body, "# Consent\n\nConsent is a clear yes.\n");
        assert_eq!(article.published_at, 1_714_557_600_000);
        assert_eq!(article.updated_at, 1_714_557_600_000 + 86_400_000);
        assert_eq!(article.reading_minutes, 1);
        let crlf = ARTICLE.replace('\n', "\r\n");
        assert_eq!(
            parse_article("articles/what-is-consent.md", &crlf).unwrap(),
            article
        );
    }

    #[test]
    fn reading_minutes_rounds_up() {
        assert_eq!(reading_minutes(""), 1);
        assert_eq!(reading_minutes(&"word ".repeat(200)), 1);
        assert_eq!(reading_minutes(&"word ".repeat(201)), 2);
        assert_eq!(reading_minutes(&"word\n".repeat(1000)), 5);
    }

    #[test]
    fn article_errors_name_file_and_field() {
        let file = "articles/what-is-consent.md";
        let cases = [
            (
                ARTICLE.replace("slug = \"what-is-consent\"", "slug = \"other\""),
                "slug",
            ),
            (ARTICLE.replace("\"en\"", "\"English\""), "language"),
            (
                ARTICLE.replace("\"2024-05-01T10:00:00Z\"", "\"2024-05-01 10:00\""),
                "published_at",
            ),
            (
                ARTICLE.replace("2024-05-02T10:00:00Z", "2024-04-02T10:00:00Z"),
                "updated_at",
            ),
            (ARTICLE.replace("\"Haven team\"", "\"  \""), "author"),
            (
                ARTICLE.replace("[\"consent\"]", "[\"consent\", \"consent\"]"),
                "tags[1]",
            ),
            (
                ARTICLE
                    .split("+++\n")
                    .take(2)
                    .collect::<Vec<_>>()
                    .join("+++\n")
                    + "+++\n",
                "body",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                field_error(parse_article(file, &text)),
                (file.to_owned(), expected.to_owned())
            );
        }
        assert_eq!(
            field_error(parse_article(
                "articles/Bad_Name.md",
                &ARTICLE.replace("slug = \"what-is-consent\"\n", "")
            ))
            .1,
            "slug"
        );
    }

    #[test]
    fn syntax_errors_name_file_and_key() {
        let file = "articles/what-is-consent.md";
        let unknown = ARTICLE.replace("language", "colour = \"red\"\nlanguage");
        let missing = ARTICLE.replace("content_warnings = []\n", "");
        let wrong_type = ARTICLE.replace("tags = [\"consent\"]", "tags = \"consent\"");
        for (text, key) in [
            (unknown, "colour"),
            (missing, "content_warnings"),
            (wrong_type, "tags"),
        ] {
            match parse_article(file, &text) {
                Err(error @ ContentError::Syntax { .. }) => {
                    let message = error.to_string();
                    assert!(message.contains(file) && message.contains(key), "{message}");
                }
                other => panic!("expected a syntax error, got {other:?}"),
            }
        }
        // Line numbers count from the top of the file, not of the front matter.
        let unknown = ARTICLE.replace("language", "colour = \"red\"\nlanguage");
        let message = parse_article(file, &unknown).unwrap_err().to_string();
        assert!(message.contains("line 8"), "{message}");
        for text in [
            "no front matter",
            "+++\ntitle = \"x\"\n",
            "",
            "++++\n+++\nbody",
        ] {
            assert!(matches!(
                parse_article(file, text),
                Err(ContentError::Syntax { .. })
            ));
        }
    }

    #[test]
    fn parses_a_resource_list() {
        let list = parse_resource_list("resources/us-national.toml", RESOURCES).unwrap();
        assert_eq!(list.slug, "us-national");
        assert_eq!(list.resources.len(), 2);
        assert_eq!(list.resources[0].verified_at, "2025-01-15");
        assert_eq!(list.resources[1].phone, None);
        for region in ["campus:uc-berkeley", "city:Berlin", "DE"] {
            let text = RESOURCES.replace("\"US\"", &format!("\"{region}\""));
            assert!(
                parse_resource_list("resources/x.toml", &text).is_ok(),
                "{region}"
            );
        }
    }

    #[test]
    fn resource_errors_name_file_and_field() {
        let file = "resources/us-national.toml";
        let cases = [
            (
                RESOURCES.replace("+18006564673", "800-656-4673"),
                "resources[0].phone",
            ),
            (
                RESOURCES.replace("+18006564673", "+1800"),
                "resources[0].phone",
            ),
            (
                RESOURCES.replace("https://www.nsvrc.org\"", "http://www.nsvrc.org\""),
                "resources[1].url",
            ),
            (
                RESOURCES.replace("https://hotline.rainn.org/online", "hotline.rainn.org"),
                "resources[0].chat_url",
            ),
            (RESOURCES.replace("\"US\"", "\"us\""), "region"),
            (RESOURCES.replace("\"US\"", "\"USA\""), "region"),
            (RESOURCES.replace("\"US\"", "\"campus:\""), "region"),
            (
                RESOURCES.replace("verified_at = 2025-01-15", "verified_at = \"2025-02-30\""),
                "resources[0].verified_at",
            ),
            (
                RESOURCES.replace("verified_at = 2025-01-15", "verified_at = \"last week\""),
                "resources[0].verified_at",
            ),
            (
                RESOURCES.replace("phone = ", "sms = \" \"\nphone = "),
                "resources[0].sms",
            ),
            (
                RESOURCES.replace("languages = [\"en\"]", "languages = [\"English\"]"),
                "resources[1].languages[0]",
            ),
            (
                RESOURCES.replace("[\"organisation\"]", "[\"a\", \"a\"]"),
                "resources[1].categories[1]",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                field_error(parse_resource_list(file, &text)),
                (file.to_owned(), expected.to_owned()),
            );
        }
        let unknown = RESOURCES.replace(
            "hours = \"Weekdays\"",
            "hours = \"Weekdays\"\nemail = \"a@b\"",
        );
        let error = parse_resource_list(file, &unknown).unwrap_err().to_string();
        assert!(error.contains(file) && error.contains("email"), "{error}");
    }

    #[test]
    fn latest_update_takes_articles_and_resources() {
        let article = parse_article("articles/what-is-consent.md", ARTICLE).unwrap();
        let list = parse_resource_list("resources/us.toml", RESOURCES).unwrap();
        assert_eq!(ContentSet::default().latest_update_ms(), 0);
        let articles_only = ContentSet {
            articles: vec![article.clone()],
            resource_lists: Vec::new(),
        };
        assert_eq!(articles_only.latest_update_ms(), article.updated_at);
        // The resources were verified on 2025-01-15, after the article's 2024-05-02 update.
        let both = ContentSet {
            articles: vec![article],
            resource_lists: vec![list],
        };
        assert_eq!(
            both.latest_update_ms(),
            parse_rfc3339_ms("2025-01-15T00:00:00Z").unwrap()
        );
    }

    #[test]
    fn e164() {
        assert!(is_e164("+18006564673"));
        assert!(is_e164("+4930123456"));
        for bad in [
            "18006564673",
            "+1800",
            "+0800123456",
            "+1 800 656 4673",
            "+1234567890123456",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
    }
}
