//! Where hvbox finds its VMM program, `hvbox-vmm`: beside its own executable
//! (`cargo install --path cli` and the build's target folder put both there).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

pub fn vmm_program() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the hvbox binary")?;
    vmm_beside(&exe)
}

fn vmm_beside(hvbox: &Path) -> Result<PathBuf> {
    let vmm = hvbox.with_file_name("hvbox-vmm");
    if !vmm.is_file() {
        bail!(
            "hvbox's VMM program {} is missing; it is installed beside hvbox \
             (`cargo install --path cli` installs both)",
            vmm.display()
        );
    }
    Ok(vmm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vmm_is_found_beside_hvbox_or_named_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let hvbox = dir.path().join("hvbox");
        let err = vmm_beside(&hvbox).unwrap_err().to_string();
        let expected = dir.path().join("hvbox-vmm");
        assert!(
            err.contains(&format!("{} is missing", expected.display())),
            "{err}"
        );
        std::fs::write(&expected, "").unwrap();
        assert_eq!(vmm_beside(&hvbox).unwrap(), expected);
    }
}
