//! What a machine is, fixed when it is created: identity, network address, origin.

use super::kernels::KernelRecord;
use anyhow::{Context, Result};
use hvbox_cloud_init::GuestProxy;
use hvbox_vmm::MacAddr;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MachineState {
    /// cloud-init runs its first-boot setup once per instance-id, so it stays fixed
    /// until the machine is destroyed.
    pub instance_id: String,
    pub mac: MacAddr,
    pub hostname: String,
    pub user: String,
    pub box_name: String,
    pub box_disk_digest: String,
    pub created_unix: u64,
    /// Every distinct kernel booted, oldest first.
    #[serde(default)]
    pub kernels: Vec<KernelRecord>,
    /// A kernel version booted instead of the disk's default: set by a rollback, or by
    /// an upgrade whose kernel the disk's boot configuration does not default to.
    #[serde(default)]
    pub pinned_kernel: Option<String>,
    /// When the spec's provision steps last all succeeded (unix seconds). Cleared as
    /// a run starts, so a run that failed or was cut short is run again by `up`.
    #[serde(default)]
    pub provisioned_unix: Option<u64>,
    /// The host's proxies as the machine's seed gave them when it was made
    /// ([`crate::host_proxy`]). They apply at first boot only, so a later seed
    /// keeps them whatever proxies the shell running `up` has; a machine made
    /// before they were recorded has none.
    #[serde(default, skip_serializing_if = "GuestProxy::is_empty")]
    pub proxy: GuestProxy,
}

impl MachineState {
    pub fn load(path: &Path) -> Result<MachineState> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading machine state {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("machine state {} is damaged", path.display()))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self)?;
        text.push('\n');
        super::write_atomic(path, text.as_bytes())
    }
}

/// Random bytes from the kernel, for identities that must not repeat.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    use std::io::Read;
    let mut buf = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf)
}

pub fn new_instance_id() -> Result<String> {
    let b = random_bytes::<8>()?;
    Ok(format!(
        "i-{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    ))
}

/// A locally administered MAC in QEMU's 52:54:00 range, random in the last three bytes.
pub fn new_mac() -> Result<MacAddr> {
    let [a, b, c] = random_bytes::<3>()?;
    Ok(MacAddr::new([0x52, 0x54, 0, a, b, c]).expect("52:54:00 is unicast"))
}
