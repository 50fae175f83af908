//! Where hvbox finds its VMM program, `hvbox-vmm`: beside its own executable
//! (`cargo install --path cli` and the build's target folder put both there).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Where `hvbox-vmm` should be; [`vmm_program`] when it must be there.
pub fn vmm_path() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the hvbox binary")?;
    Ok(exe.with_file_name("hvbox-vmm"))
}

/// `hvbox-vmm`, or an error that says where it is missing.
pub fn vmm_program() -> Result<PathBuf> {
    let vmm = vmm_path()?;
    check(&vmm)?;
    Ok(vmm)
}

pub fn check(vmm: &Path) -> Result<()> {
    if !vmm.is_file() {
        bail!(
            "hvbox's VMM program {} is missing; it is installed beside hvbox \
             (`cargo install --path cli` installs both)",
            vmm.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_vmm_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let vmm = dir.path().join("hvbox-vmm");
        let err = check(&vmm).unwrap_err().to_string();
        assert!(
            err.contains(&format!("{} is missing", vmm.display())),
            "{err}"
        );
        std::fs::write(&vmm, "").unwrap();
        check(&vmm).unwrap();
    }
}
