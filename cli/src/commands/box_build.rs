//! `hvbox box build NAME`: a Debian box from Debian's packages, for offline use. A
//! normal user builds in a user namespace. Under sudo the box is built in root's
//! store and then copied into the store of the user sudo ran for, by a process
//! running as them, as their `hvbox up` looks there.

use crate::args::BoxBuildArgs;
use crate::spec::Size;
use anyhow::{anyhow, Context, Result};
use hvbox_boxes::boot_profile::BootProfile;
use hvbox_boxes::build::{build, BuildOptions, RECIPE_FILE};
use hvbox_boxes::build_user;
use hvbox_boxes::catalog::{self, LOCAL_DISK_FILE, LOCAL_SUMS_FILE};
use std::process::ExitCode;

pub fn run(o: BoxBuildArgs) -> Result<ExitCode> {
    let size = Size::parse(&o.size).map_err(|e| anyhow!("--size: {e}"))?;
    if o.output.is_none() {
        // The name becomes a folder of the store, and one the catalog can find.
        catalog::check_name(&o.name)?;
    }
    // An explicit folder or store is the caller's choice, even under sudo.
    let for_user = (o.output.is_none() && std::env::var_os("HVBOX_DATA_DIR").is_none())
        .then(build_user::invoking_user)
        .flatten();
    let out_dir = o
        .output
        .unwrap_or_else(|| catalog::local_boxes_dir().join(&o.name));
    let opts = BuildOptions {
        suite: o.suite,
        out_dir: out_dir.clone(),
        sources: o.sources,
        disk_size: size.bytes(),
        extra_packages: o.packages,
        force: o.force,
        profile: if o.stock {
            BootProfile::Stock
        } else {
            BootProfile::Fast
        },
    };
    let built = build(&opts, &mut |line| println!("==> {line}"))?;
    let disk = match &for_user {
        Some(user) => {
            let dest = build_user::data_dir_of(user).join("boxes").join(&o.name);
            println!(
                "==> copying the box into the store of {}, who ran sudo: {}",
                user.name,
                dest.display()
            );
            build_user::install_as(
                user,
                &out_dir,
                &[LOCAL_DISK_FILE, LOCAL_SUMS_FILE, RECIPE_FILE],
                &dest,
            )
            .with_context(|| format!("the box stays in {}", out_dir.display()))?;
            dest.join(LOCAL_DISK_FILE)
        }
        None => built.disk,
    };
    println!("disk:   {}", disk.display());
    println!("digest: {}", built.digest);
    Ok(ExitCode::SUCCESS)
}
