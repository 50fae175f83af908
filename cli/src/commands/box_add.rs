//! `hvbox box add NAME|URL`: fetch a box into the cache ahead of time.

use super::box_fetch::{catalog, describe};
use crate::args::BoxAddArgs;
use anyhow::{bail, Context, Result};
use hvbox_boxes::catalog::{any_digest_from_sums, BoxRequest};
use hvbox_boxes::{fetch_text, format_bytes, Artifact, BoxArtifacts, Progress, Store};
use std::process::ExitCode;

pub fn run(args: &BoxAddArgs) -> Result<ExitCode> {
    let store = Store::open_default()?;
    let progress = if args.quiet {
        Progress::Quiet
    } else {
        Progress::Auto
    };
    let artifacts = if args.source.contains("://") {
        from_url(args)?
    } else {
        if args.checksums.is_some() || args.format.is_some() || args.name.is_some() {
            bail!("--checksums, --format and --name go with a URL; a catalog box knows its own");
        }
        let request = BoxRequest {
            name: args.source.clone(),
            version: args.version.clone(),
            digest: args.digest.clone(),
        };
        // Inside a project, its own catalog file counts too.
        let project = crate::project::Project::discover().ok();
        catalog(project.as_ref().map(|p| p.root.as_path()), &store)?.resolve(&request)?
    };
    let fetched = store.fetch_box(&artifacts, progress)?;
    let entry = &fetched.disk;
    let size = entry.meta.as_ref().map_or(0, |m| m.disk_size);
    println!(
        "{}: {} ({}, {} on disk)",
        describe(&artifacts.name, artifacts.version.as_deref()),
        entry.digest,
        format_bytes(size),
        format_bytes(entry.allocated)
    );
    Ok(ExitCode::SUCCESS)
}

fn from_url(args: &BoxAddArgs) -> Result<BoxArtifacts> {
    let url = &args.source;
    let file = url.rsplit('/').next().unwrap_or(url);
    let digest = match (&args.digest, &args.checksums) {
        (Some(d), None) => d.clone(),
        (None, Some(sums)) => {
            let text = fetch_text(sums, Progress::Quiet)?;
            any_digest_from_sums(&text, file)
                .with_context(|| format!("{sums} has no line for {file}"))?
        }
        (Some(_), Some(_)) => bail!("give --digest or --checksums, not both"),
        (None, None) => bail!(
            "a URL needs --digest sha256:… (or --checksums URL of a SHA256SUMS/SHA512SUMS file): hvbox verifies every download"
        ),
    };
    let mut disk = Artifact::new(url.clone(), digest);
    disk.format = args.format;
    Ok(BoxArtifacts {
        name: args.name.clone().unwrap_or_else(|| file.to_string()),
        version: args.version.clone(),
        disk,
        kernel: None,
        initrd: None,
    })
}
