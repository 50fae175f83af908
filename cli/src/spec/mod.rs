//! `hvbox.yaml`: what a team commits to describe its machines.
//!
//! Every value is checked while it is deserialized, so that a bad value is reported
//! by serde_yaml with its line and column; [`SpecError`] adds the file name. The file
//! is read in layers (the top level, then each machine: see [`layer`]), key by key so
//! that every problem is reported ([`read`]), and resolved into one [`Spec`] per
//! machine by [`ProjectSpec`]. [`check()`] adds what the spec refers to on the host;
//! [`schema`] describes the same types as a JSON Schema.

mod box_source;
mod check;
mod duplicates;
mod entries;
pub mod first_boot;
mod guest_setup;
pub mod host_paths;
mod layer;
mod locate;
mod machines;
pub mod mounts;
mod ports;
mod problems;
mod project;
mod provision;
mod read;
pub mod schema;
mod size;
mod values;

pub use box_source::{BoxArtifactsSpec, BoxSource};
pub use check::{check, Boxes};
pub use guest_setup::{CloudInitSettings, NetworkSettingsSpec};
pub use mounts::MountSpec;
pub use ports::PortEntry;
pub use problems::{SpecError, SpecProblems};
pub use project::{ProjectSpec, DEFAULT_MACHINE};
pub use provision::{Action, ProvisionStep};
pub use size::{MemorySize, Size};
pub use values::{Hostname, KernelArgs, UserName};

use schemars::JsonSchema;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

pub const SPEC_FILE: &str = "hvbox.yaml";

/// One machine's settings, resolved from the spec's layers with hvbox's defaults
/// (see [`layer::Layer::resolve`]).
#[derive(Debug, Clone)]
pub struct Spec {
    pub box_source: BoxSource,
    /// The project folder's name when absent; a named machine's own name by default.
    pub hostname: Option<Hostname>,
    pub cpus: Cpus,
    pub memory: MemorySize,
    /// Size the machine's disk is grown to; the box's own size when absent.
    pub disk: Option<Size>,
    pub engine: EngineChoice,
    pub ssh: SshSettings,
    /// As written: forwards, and `auto: false` (see [`Spec::forwards`]).
    pub ports: Vec<PortEntry>,
    /// Offer the guest hardware virtualization (SVM/VMX) so it can run VMs itself.
    pub nested_virtualization: bool,
    /// Disk images attached after the root disk and the cloud-init seed.
    pub disks: Vec<ExtraDisk>,
    /// Adjustments to the kernel command line read from the guest's bootloader.
    pub kernel: KernelSettings,
    /// First-boot setup by cloud-init in the guest.
    pub cloud_init: CloudInitSettings,
    pub network: NetworkSettingsSpec,
    /// Steps run over ssh once the machine is up: on its first successful boot,
    /// then on request.
    pub provision: Vec<ProvisionStep>,
    /// The host folders the guest sees; `None`: the project folder at its own path.
    pub mounts: Option<Vec<MountSpec>>,
}

/// The guest's own command line (root=, ro, the distro's arguments) is used as it is
/// unless the spec replaces it or appends to it; hvbox adds `console=ttyS0 net.ifnames=0` last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KernelSettings {
    /// Replaces the guest's own command line (so it must name the root device).
    pub cmdline: Option<KernelArgs>,
    /// Appended to the guest's own (or the replaced) command line.
    pub cmdline_append: Option<KernelArgs>,
}

impl KernelSettings {
    /// The command line to boot: the guest's (or the spec's replacement), the spec's
    /// additions, then `console`.
    pub fn cmdline(&self, guest: &str, console: &str) -> String {
        let base = self.cmdline.as_ref().map_or(guest, |c| c.0.as_str());
        [
            Some(base),
            self.cmdline_append.as_ref().map(|a| a.0.as_str()),
            Some(console),
        ]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
    }
}

/// A raw disk image attached to the machine.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtraDisk {
    /// Raw image; a relative path is relative to the spec's folder.
    pub path: PathBuf,
    /// Attach it read-only (default false).
    #[serde(default)]
    pub read_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpus(pub u32);

impl<'de> Deserialize<'de> for Cpus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct CpusVisitor;
        impl Visitor<'_> for CpusVisitor {
            type Value = Cpus;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of vCPUs from 1 to 255")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Cpus, E> {
                match n {
                    1..=255 => Ok(Cpus(n as u32)),
                    _ => Err(E::custom(format!("cpus must be from 1 to 255, got {n}"))),
                }
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Cpus, E> {
                Err(E::custom(format!("cpus must be from 1 to 255, got {n}")))
            }
        }
        d.deserialize_u64(CpusVisitor)
    }
}

/// `auto` (hvbox's own VMM with hardware virtualization, else QEMU), `builtin` or
/// `qemu`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    #[default]
    Auto,
    Builtin,
    Qemu,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SshSettings {
    /// The login user, created by cloud-init with passwordless sudo (default dev).
    pub user: Option<UserName>,
    /// Extra groups for the user (e.g. docker).
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

/// A host port forwarded to a guest port.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortForward {
    pub host: Port,
    pub guest: Port,
    /// `tcp` (default) or `udp`.
    #[serde(default)]
    pub protocol: Protocol,
    /// Host address the port is bound to; loopback unless the spec opens it wider.
    #[serde(default = "loopback")]
    pub address: IpAddr,
}

pub(super) fn loopback() -> IpAddr {
    IpAddr::from([127, 0, 0, 1])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Port(pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number from 1 to 65535")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Port, E> {
                match u16::try_from(n) {
                    Ok(p) if p > 0 => Ok(Port(p)),
                    _ => Err(E::custom(format!(
                        "a port must be from 1 to 65535, got {n}"
                    ))),
                }
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Port, E> {
                Err(E::custom(format!(
                    "a port must be from 1 to 65535, got {n}"
                )))
            }
        }
        d.deserialize_u64(PortVisitor)
    }
}

impl Spec {
    /// The host ports the spec forwards to the guest.
    pub fn forwards(&self) -> Vec<PortForward> {
        ports::forwards(&self.ports).cloned().collect()
    }

    /// Whether ports the guest starts listening on are forwarded on their own.
    pub fn auto_forward(&self) -> bool {
        ports::auto_forward(&self.ports)
    }

    /// The settings of a spec's only machine; for tests of a one-machine spec.
    #[cfg(test)]
    pub fn parse(text: &str, path: &Path) -> Result<Spec, SpecProblems> {
        let project = ProjectSpec::parse(text, path)?;
        match project.machines() {
            [(_, spec)] => Ok(spec.clone()),
            several => Err(SpecProblems::new(
                path,
                vec![SpecError::whole(
                    path,
                    format!("has {} machines, not one", several.len()),
                )],
            )),
        }
    }
}

/// The spec in `start` or the nearest parent folder, as Vagrant finds its Vagrantfile.
pub fn find_spec(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .map(|dir| dir.join(SPEC_FILE))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod machine_tests;

#[cfg(test)]
mod check_tests;

#[cfg(test)]
mod port_tests;
