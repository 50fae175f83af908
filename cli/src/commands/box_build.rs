//! `hvbox box build NAME`: a Debian box from Debian's packages, for offline use. A
//! normal user builds in a user namespace; under sudo the box goes to the store of
//! the user sudo ran for, owned by them, as their `hvbox up` looks there.

use crate::args::BoxBuildArgs;
use crate::spec::Size;
use anyhow::{anyhow, Context, Result};
use hvbox_boxes::build::{build, BuildOptions};
use hvbox_boxes::build_user;
use hvbox_boxes::catalog;
use std::process::ExitCode;

pub fn run(o: BoxBuildArgs) -> Result<ExitCode> {
    let size = Size::parse(&o.size).map_err(|e| anyhow!("--size: {e}"))?;
    // An explicit folder or store is the caller's choice, even under sudo.
    let for_user = (o.output.is_none() && std::env::var_os("HVBOX_DATA_DIR").is_none())
        .then(build_user::invoking_user)
        .flatten();
    let store = match &for_user {
        Some(user) => build_user::data_dir_of(user),
        None => catalog::data_dir(),
    };
    let out_dir = o
        .output
        .unwrap_or_else(|| store.join("boxes").join(&o.name));
    if let Some(user) = &for_user {
        println!(
            "==> building into the store of {}, who ran sudo: {}",
            user.name,
            store.display()
        );
    }
    let opts = BuildOptions {
        suite: o.suite,
        out_dir: out_dir.clone(),
        sources: o.sources,
        disk_size: size.bytes(),
        extra_packages: o.packages,
        force: o.force,
    };
    let built = build(&opts, &mut |line| println!("==> {line}"));
    // Even a failed build leaves folders (the store, the lock) that must be theirs.
    if let Some(user) = for_user.as_ref().filter(|_| out_dir.exists()) {
        build_user::give_box_to(user, &out_dir)
            .with_context(|| format!("handing {} to {}", out_dir.display(), user.name))?;
    }
    let built = built?;
    println!("disk:   {}", built.disk.display());
    println!("digest: {}", built.digest);
    Ok(ExitCode::SUCCESS)
}
