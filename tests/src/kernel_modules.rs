//! The modules a kernel needs for a driver, in the order they must be loaded, read
//! from `/lib/modules/VERSION/modules.dep` (what modprobe reads): for an initramfs
//! whose init loads them itself.

use std::path::{Path, PathBuf};

/// The files of `wanted` (paths as modules.dep writes them, e.g.
/// `kernel/fs/fuse/virtiofs.ko`) and of everything they depend on, each after its
/// dependencies, each once.
pub fn load_order(modules_dir: &Path, wanted: &[&str]) -> Result<Vec<PathBuf>, String> {
    let dep_file = modules_dir.join("modules.dep");
    let text = std::fs::read_to_string(&dep_file)
        .map_err(|e| format!("reading {}: {e}", dep_file.display()))?;
    let order = order_from_dep(&text, wanted)?;
    Ok(order.iter().map(|m| modules_dir.join(m)).collect())
}

/// [`load_order`] on the text of a modules.dep.
pub fn order_from_dep(dep: &str, wanted: &[&str]) -> Result<Vec<String>, String> {
    let deps = |module: &str| -> Result<Vec<String>, String> {
        dep.lines()
            .find_map(|l| l.strip_prefix(module)?.strip_prefix(':'))
            .map(|rest| rest.split_whitespace().map(String::from).collect())
            .ok_or_else(|| format!("{module} is not in modules.dep"))
    };
    fn visit(
        module: &str,
        deps: &dyn Fn(&str) -> Result<Vec<String>, String>,
        order: &mut Vec<String>,
        path: &mut Vec<String>,
    ) -> Result<(), String> {
        if order.iter().any(|m| m == module) {
            return Ok(());
        }
        if path.iter().any(|m| m == module) {
            return Err(format!("modules.dep has a cycle through {module}"));
        }
        path.push(module.to_string());
        for dependency in deps(module)? {
            visit(&dependency, deps, order, path)?;
        }
        path.pop();
        order.push(module.to_string());
        Ok(())
    }
    let mut order = Vec::new();
    for module in wanted {
        visit(module, &deps, &mut order, &mut Vec::new())?;
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines as Debian 6.1's modules.dep has them.
    const DEP: &str = "\
kernel/fs/fuse/fuse.ko:
kernel/fs/fuse/virtiofs.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko kernel/fs/fuse/fuse.ko
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
";

    #[test]
    fn dependencies_come_first_and_once() {
        let order = order_from_dep(
            DEP,
            &[
                "kernel/drivers/virtio/virtio_pci.ko",
                "kernel/fs/fuse/virtiofs.ko",
            ],
        )
        .unwrap();
        let names: Vec<&str> = order
            .iter()
            .map(|m| m.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "virtio_pci_legacy_dev.ko",
                "virtio_pci_modern_dev.ko",
                "virtio_ring.ko",
                "virtio.ko",
                "virtio_pci.ko",
                "fuse.ko",
                "virtiofs.ko"
            ]
        );
    }

    #[test]
    fn an_unknown_module_or_a_cycle_is_an_error() {
        let err = order_from_dep(DEP, &["kernel/fs/nine.ko"]).unwrap_err();
        assert_eq!(err, "kernel/fs/nine.ko is not in modules.dep");
        let cycle = "a.ko: b.ko\nb.ko: a.ko\n";
        assert!(order_from_dep(cycle, &["a.ko"])
            .unwrap_err()
            .contains("cycle"));
    }
}
