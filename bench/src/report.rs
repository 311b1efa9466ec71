//! Placeholder; filled in below.
#[derive(Debug, clap::Args)]
pub(crate) struct ReportArgs {}
pub(crate) fn run(_args: &ReportArgs) -> anyhow::Result<()> {
    Ok(())
}
