//! The settings of a machine as the spec writes them, in layers: the top level of
//! `hvbox.yaml` holds the defaults of every machine, and each entry of `machines:`
//! a layer over them. A key a machine sets replaces the top-level key of the same
//! name wholesale (no deep merge: a machine's `ports` is its whole list of ports).
//!
//! To add a setting: one line in the `layers!` list below (its type as [`Spec`] holds
//! it) and one line in [`Layer::resolve`] (its default).

use super::machines::{Machines, NamedLayer};
use super::BoxSource;
use super::{
    CloudInitSettings, Cpus, EngineChoice, ExtraDisk, Hostname, KernelSettings,
    NetworkSettingsSpec, PortForward, ProvisionStep, Size, Spec, SshSettings,
};
use serde::{Deserialize, Deserializer};

/// Defines [`Layer`] and [`SpecFile`] from one list of settings, so the top level and
/// the machines accept the same keys (plus `machines` at the top level), and an
/// unknown key's error lists exactly the keys allowed where it is.
macro_rules! layers {
    ($( $(#[$attr:meta])* $field:ident: $ty:ty, )*) => {
        /// One layer of machine settings; an absent key is `None`.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Layer {
            $(
                $(#[$attr])*
                #[serde(default, deserialize_with = "present")]
                pub $field: Option<$ty>,
            )*
        }

        /// The whole file: the defaults and, optionally, the machines.
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct SpecFile {
            $(
                $(#[$attr])*
                #[serde(default, deserialize_with = "present")]
                $field: Option<$ty>,
            )*
            /// Named machines, each a layer over the top-level keys.
            #[serde(default, deserialize_with = "present")]
            machines: Option<Machines>,
        }

        impl SpecFile {
            /// The top-level layer and the machines.
            pub fn split(self) -> (Layer, Option<Vec<NamedLayer>>) {
                (Layer { $( $field: self.$field, )* }, self.machines.map(|m| m.0))
            }
        }

        impl Layer {
            /// This layer over `base`: what this one sets wins, key by key.
            pub fn over(self, base: &Layer) -> Layer {
                Layer { $( $field: self.$field.or_else(|| base.$field.clone()), )* }
            }
        }
    };
}

layers! {
    #[serde(rename = "box")]
    box_source: BoxSource,
    hostname: Option<Hostname>,
    cpus: Cpus,
    memory: Size,
    disk: Option<Size>,
    engine: EngineChoice,
    ssh: SshSettings,
    ports: Vec<PortForward>,
    nested_virtualization: bool,
    disks: Vec<ExtraDisk>,
    kernel: KernelSettings,
    cloud_init: CloudInitSettings,
    network: NetworkSettingsSpec,
    provision: Vec<ProvisionStep>,
}

/// A key that is present is read as its type, so `memory:` with no value is an
/// error, as it was before settings came in layers. (Types that are optional
/// themselves, such as `hostname`, take a null: for a machine, that undoes the
/// top-level value.)
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl Layer {
    /// One machine's settings, with hvbox's defaults for what no layer set; `None`
    /// when no layer names a box.
    pub fn resolve(self) -> Option<Spec> {
        Some(Spec {
            box_source: self.box_source?,
            hostname: self.hostname.flatten(),
            cpus: self.cpus.unwrap_or(Cpus(2)),
            memory: self.memory.unwrap_or(Size::from_bytes(1 << 30)),
            disk: self.disk.flatten(),
            engine: self.engine.unwrap_or_default(),
            ssh: self.ssh.unwrap_or_default(),
            ports: self.ports.unwrap_or_default(),
            nested_virtualization: self.nested_virtualization.unwrap_or(false),
            disks: self.disks.unwrap_or_default(),
            kernel: self.kernel.unwrap_or_default(),
            cloud_init: self.cloud_init.unwrap_or_default(),
            network: self.network.unwrap_or_default(),
            provision: self.provision.unwrap_or_default(),
        })
    }
}
