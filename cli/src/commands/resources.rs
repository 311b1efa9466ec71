//! `haven resources list [--region R]`: support services and hotlines, offline. Phone numbers
//! are printed exactly as the signed content gives them (E.164); services that really answer
//! around the clock are marked 24/7, no others.

use std::io::Write as _;

use anyhow::Context as _;
use clap::Subcommand;
use haven_core::documents::{Resource, ResourceList};
use serde::Serialize;

use crate::GlobalArgs;
use crate::device;
use crate::output::{self, JsonArgs};

#[derive(Debug, Subcommand)]
pub(crate) enum ResourcesCommand {
    /// Resource lists, by region.
    List {
        /// Only this region: an ISO country code (`US`, `GB`), `campus:<name>` or `city:<name>`.
        #[arg(long, value_name = "R")]
        region: Option<String>,
        #[command(flatten)]
        output: JsonArgs,
    },
}

/// One element of `haven resources list --json`.
#[derive(Debug, Serialize)]
struct ListJson {
    slug: String,
    title: String,
    region: String,
    resources: Vec<ResourceJson>,
}

#[derive(Debug, Serialize)]
struct ResourceJson {
    name: String,
    description: String,
    /// E.164, as published.
    phone: Option<String>,
    sms: Option<String>,
    chat_url: Option<String>,
    url: String,
    hours: String,
    is_24_7: bool,
    languages: Vec<String>,
    categories: Vec<String>,
    source_url: String,
    /// `YYYY-MM-DD`.
    verified_at: String,
}

impl From<ResourceList> for ListJson {
    fn from(list: ResourceList) -> Self {
        Self {
            slug: list.slug,
            title: list.title,
            region: list.region,
            resources: list.resources.into_iter().map(ResourceJson::from).collect(),
        }
    }
}

impl From<Resource> for ResourceJson {
    fn from(resource: Resource) -> Self {
        Self {
            name: resource.name,
            description: resource.description,
            phone: resource.phone,
            sms: resource.sms,
            chat_url: resource.chat_url,
            url: resource.url,
            hours: resource.hours,
            is_24_7: resource.is_24_7,
            languages: resource.languages,
            categories: resource.categories,
            source_url: resource.source_url,
            verified_at: resource.verified_at,
        }
    }
}

pub(crate) fn run(global: &GlobalArgs, command: ResourcesCommand) -> anyhow::Result<()> {
    let ResourcesCommand::List { region, output } = command;
    let haven = device::open_offline(global)?;
    let lists = haven.resources(region.as_deref());
    let known = if lists.as_ref().is_ok_and(Vec::is_empty) {
        haven.resources(None).ok()
    } else {
        None
    };
    device::close(haven)?;
    let lists = lists.context("reading the resource lists")?;
    if output.json {
        let json: Vec<ListJson> = lists.into_iter().map(ListJson::from).collect();
        return output::print_json(&json);
    }
    if lists.is_empty() {
        let mut regions: Vec<String> = known
            .unwrap_or_default()
            .into_iter()
            .map(|list| list.region)
            .collect();
        regions.dedup();
        eprintln!(
            "haven: no resource lists{} on this profile (regions here: {})",
            region.map(|r| format!(" for {r}")).unwrap_or_default(),
            if regions.is_empty() {
                "none".to_owned()
            } else {
                regions.join(", ")
            }
        );
        return Ok(());
    }
    let mut text = String::new();
    for list in lists {
        text.push_str(&format!("{} [{}]\n", list.title, list.region));
        for resource in list.resources {
            push_resource(&mut text, &resource);
        }
        text.push('\n');
    }
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .context("writing to stdout")
}

fn push_resource(text: &mut String, resource: &Resource) {
    let mark = if resource.is_24_7 { "  [24/7]" } else { "" };
    text.push_str(&format!("  {}{mark}\n", resource.name));
    if let Some(phone) = &resource.phone {
        text.push_str(&format!("    phone: {phone}\n"));
    }
    if let Some(sms) = &resource.sms {
        text.push_str(&format!("    text:  {sms}\n"));
    }
    if let Some(chat) = &resource.chat_url {
        text.push_str(&format!("    chat:  {chat}\n"));
    }
    if !resource.url.is_empty() {
        text.push_str(&format!("    web:   {}\n", resource.url));
    }
    if !resource.hours.is_empty() {
        text.push_str(&format!("    hours: {}\n", resource.hours));
    }
    if !resource.description.is_empty() {
        text.push_str(&format!("    {}\n", resource.description));
    }
    text.push_str(&format!(
        "    (checked {} at {})\n",
        resource.verified_at, resource.source_url
    ));
}
