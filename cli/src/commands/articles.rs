//! `haven articles list|show`: the awareness articles, offline (bundled with the app, updated by
//! `haven sync`). `show` prints an article's content warnings first, before anything else of it,
//! and on a terminal waits for Enter before the body, so a reader can stop there.

use std::io::{IsTerminal as _, Write as _};

use anyhow::Context as _;
use clap::Subcommand;
use haven_core::client::ArticleSummary;
use haven_core::documents::Article;
use serde::Serialize;

use crate::GlobalArgs;
use crate::device;
use crate::output::say;
use crate::output::{self, JsonArgs};
use crate::secrets;

#[derive(Debug, Subcommand)]
pub(crate) enum ArticlesCommand {
    /// The articles, newest first, with their content warnings.
    List {
        #[command(flatten)]
        output: JsonArgs,
    },
    /// One article, by slug or id. Its content warnings come first.
    Show {
        #[arg(value_name = "ID_OR_SLUG")]
        id_or_slug: String,
        /// On a terminal, do not wait for Enter after the content warnings.
        #[arg(long)]
        no_pause: bool,
        #[command(flatten)]
        output: JsonArgs,
    },
}

/// One element of `haven articles list --json`.
#[derive(Debug, Serialize)]
struct SummaryJson {
    id: String,
    slug: String,
    title: String,
    summary: String,
    tags: Vec<String>,
    content_warnings: Vec<String>,
    language: String,
    published_at: i64,
    updated_at: i64,
    reading_minutes: u32,
}

impl From<ArticleSummary> for SummaryJson {
    fn from(article: ArticleSummary) -> Self {
        Self {
            id: article.id.to_hex(),
            slug: article.slug,
            title: article.title,
            summary: article.summary,
            tags: article.tags,
            content_warnings: article.content_warnings,
            language: article.language,
            published_at: article.published_at,
            updated_at: article.updated_at,
            reading_minutes: article.reading_minutes,
        }
    }
}

/// `haven articles show --json`: the whole article; `body` is Markdown.
#[derive(Debug, Serialize)]
struct ArticleJson {
    slug: String,
    title: String,
    summary: String,
    content_warnings: Vec<String>,
    body: String,
    author: String,
    tags: Vec<String>,
    language: String,
    published_at: i64,
    updated_at: i64,
    reading_minutes: u32,
}

impl From<Article> for ArticleJson {
    fn from(article: Article) -> Self {
        Self {
            slug: article.slug,
            title: article.title,
            summary: article.summary,
            content_warnings: article.content_warnings,
            body: article.body,
            author: article.author,
            tags: article.tags,
            language: article.language,
            published_at: article.published_at,
            updated_at: article.updated_at,
            reading_minutes: article.reading_minutes,
        }
    }
}

pub(crate) fn run(global: &GlobalArgs, command: ArticlesCommand) -> anyhow::Result<()> {
    let haven = device::open_offline(global)?;
    let result = match command {
        ArticlesCommand::List { output } => list(&haven, output),
        ArticlesCommand::Show {
            id_or_slug,
            no_pause,
            output,
        } => haven
            .article(&id_or_slug)
            .map_err(anyhow::Error::new)
            .and_then(|article| show(article, no_pause, output)),
    };
    device::close(haven)?;
    result
}

fn list(haven: &haven_core::Haven, output: JsonArgs) -> anyhow::Result<()> {
    let articles = haven.articles();
    if output.json {
        let json: Vec<SummaryJson> = articles.into_iter().map(SummaryJson::from).collect();
        return output::print_json(&json);
    }
    if articles.is_empty() {
        eprintln!("haven: no articles on this profile yet; `haven sync` fetches them");
    }
    for article in articles {
        let warnings = if article.content_warnings.is_empty() {
            String::new()
        } else {
            format!(
                "  [content warning: {}]",
                article.content_warnings.join(", ")
            )
        };
        say!(
            "{:<28} {} ({} min){warnings}",
            article.slug,
            article.title,
            article.reading_minutes
        );
    }
    Ok(())
}

fn show(article: Article, no_pause: bool, output: JsonArgs) -> anyhow::Result<()> {
    if output.json {
        return output::print_json(&ArticleJson::from(article));
    }
    let mut stdout = std::io::stdout().lock();
    if !article.content_warnings.is_empty() {
        writeln!(
            stdout,
            "CONTENT WARNING: {}\n",
            article.content_warnings.join(", ")
        )
        .context("writing to stdout")?;
        stdout.flush().context("writing to stdout")?;
        if !no_pause && secrets::interactive() && std::io::stdout().is_terminal() {
            drop(stdout);
            secrets::ask("Press Enter to read on, or Ctrl-C to stop here. ", "Enter")?;
            stdout = std::io::stdout().lock();
            writeln!(stdout).context("writing to stdout")?;
        }
    }
    let mut text = format!("{}\n", article.title);
    if !article.summary.is_empty() {
        text.push_str(&format!("{}\n", article.summary));
    }
    text.push_str(&format!(
        "{} · {} min read · updated {}\n\n",
        if article.author.is_empty() {
            "Haven"
        } else {
            &article.author
        },
        article.reading_minutes,
        output::minute(article.updated_at)
            .get(..10)
            .unwrap_or_default()
    ));
    text.push_str(&article.body);
    if !article.body.ends_with('\n') {
        text.push('\n');
    }
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}
