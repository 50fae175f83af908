//! `hvbox box build NAME`: a Debian box from Debian's packages, for offline use.

use crate::args::BoxBuildArgs;
use crate::spec::Size;
use anyhow::{anyhow, Result};
use hvbox_boxes::build::{build, BuildOptions};
use hvbox_boxes::catalog;
use std::process::ExitCode;

pub fn run(o: BoxBuildArgs) -> Result<ExitCode> {
    let size = Size::parse(&o.size).map_err(|e| anyhow!("--size: {e}"))?;
    let out_dir = o
        .output
        .unwrap_or_else(|| catalog::local_boxes_dir().join(&o.name));
    let opts = BuildOptions {
        suite: o.suite,
        out_dir,
        sources: o.sources,
        disk_size: size.bytes(),
        extra_packages: o.packages,
        force: o.force,
    };
    let built = build(&opts, &mut |line| println!("==> {line}"))?;
    println!("disk:   {}", built.disk.display());
    println!("digest: {}", built.digest);
    Ok(ExitCode::SUCCESS)
}
