//! The settings of a machine as the spec writes them, in layers: the top level of
//! `hvbox.yaml` holds the defaults of every machine, and each entry of `machines:`
//! a layer over them. A key a machine sets replaces the top-level key of the same
//! name wholesale (no deep merge: a machine's `ports` is its whole list of ports).
//!
//! To add a setting: one line in the `layers!` list below (its type as [`Spec`] holds
//! it) and one line in [`Layer::resolve`] (its default).

use super::machines::Machines;
use super::BoxSource;
use super::{
    CloudInitSettings, Cpus, EngineChoice, ExtraDisk, Hostname, KernelSettings, MemorySize,
    MountSpec, NetworkSettingsSpec, PortEntry, ProvisionStep, Size, Spec, SshSettings,
};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer};
use std::borrow::Cow;

/// Defines [`Layer`] and [`SpecFile`] from one list of settings, so the top level and
/// the machines accept the same keys (plus `machines` at the top level), and an
/// unknown key's error lists exactly the keys allowed where it is. The same types
/// give the JSON Schema (`hvbox schema`), each key's doc comment its description.
macro_rules! layers {
    ($( $(#[$attr:meta])* $field:ident: $ty:ty, )*) => {
        /// The settings of one machine; each is the top level's when absent.
        #[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        #[schemars(rename = "MachineSettings")]
        pub struct Layer {
            $(
                $(#[$attr])*
                #[serde(default)]
                pub $field: Present<$ty>,
            )*
        }

        /// hvbox.yaml: the settings of every machine and, optionally, the machines.
        #[derive(Debug, Deserialize, JsonSchema)]
        #[serde(deny_unknown_fields)]
        #[schemars(rename = "hvbox.yaml")]
        pub struct SpecFile {
            $(
                $(#[$attr])*
                #[serde(default)]
                $field: Present<$ty>,
            )*
            /// Named machines, each a layer over the top-level keys: a key a machine
            /// sets replaces the top-level one wholesale.
            #[serde(default)]
            machines: Present<Machines>,
        }

        impl SpecFile {
            /// The top-level layer and the machines' names.
            pub fn split(self) -> (Layer, Option<Vec<String>>) {
                (Layer { $( $field: self.$field, )* }, self.machines.0.map(|m| m.0))
            }
        }

        impl Layer {
            /// This layer over `base`: what this one sets wins, key by key.
            pub fn over(self, base: &Layer) -> Layer {
                Layer { $( $field: Present(self.$field.0.or_else(|| base.$field.0.clone())), )* }
            }
        }
    };
}

layers! {
    /// The box the machine is made from: a catalog name (optionally pinned to a
    /// version and digest), or the box's artifacts given by URL and digest.
    #[serde(rename = "box")]
    box_source: BoxSource,
    /// The guest's hostname; default: the project folder's name (with `machines:`,
    /// the machine's name).
    hostname: Option<Hostname>,
    /// Virtual CPUs, 1 to 255 (default 2).
    cpus: Cpus,
    /// The guest's memory, in binary units: K, M, G, T (default 1G, at least 512M, in whole MiB).
    memory: MemorySize,
    /// Grow the machine's disk to this size; default: the box's size.
    disk: Option<Size>,
    /// Which engine runs the machine (default auto: builtin with hardware
    /// virtualization, else qemu).
    engine: EngineChoice,
    /// The login user cloud-init creates, with passwordless sudo.
    ssh: SshSettings,
    /// Host ports forwarded to the guest; an entry `auto: false` turns off the
    /// automatic forwarding of ports the guest listens on.
    ports: Vec<PortEntry>,
    /// Offer the guest hardware virtualization (SVM/VMX) so it can run VMs itself.
    nested_virtualization: bool,
    /// Raw disk images attached after the root disk and the cloud-init seed.
    disks: Vec<ExtraDisk>,
    /// Adjustments to the kernel command line read from the guest's bootloader.
    kernel: KernelSettings,
    /// First-boot setup by cloud-init in the guest.
    cloud_init: CloudInitSettings,
    /// The guest's NIC: DHCP unless set otherwise.
    network: NetworkSettingsSpec,
    /// Steps run over ssh once the machine is up: on its first successful boot, then
    /// on request.
    provision: Vec<ProvisionStep>,
    /// Host folders the guest sees (virtio-fs). Default: the project folder,
    /// writable, at the same absolute path in the guest; `[]` mounts nothing.
    mounts: Vec<MountSpec>,
}

/// A key's value, when the key is written. A written key is read as its type, so
/// `memory:` with no value is an error, as it was before settings came in layers.
/// (Types that are optional themselves, such as `hostname`, take a null: for a
/// machine, that undoes the top-level value.) Its JSON Schema is its type's.
#[derive(Debug, Clone)]
pub struct Present<T>(pub Option<T>);

impl<T> Default for Present<T> {
    fn default() -> Self {
        Present(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Present<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(|value| Present(Some(value)))
    }
}

impl<T: JsonSchema> JsonSchema for Present<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

impl Layer {
    /// One machine's settings, with hvbox's defaults for what no layer set; `None`
    /// when no layer names a box.
    pub fn resolve(self) -> Option<Spec> {
        Some(Spec {
            box_source: self.box_source.0?,
            hostname: self.hostname.0.flatten(),
            cpus: self.cpus.0.unwrap_or(Cpus(2)),
            memory: self
                .memory
                .0
                .unwrap_or(MemorySize(Size::from_bytes(1 << 30))),
            disk: self.disk.0.flatten(),
            engine: self.engine.0.unwrap_or_default(),
            ssh: self.ssh.0.unwrap_or_default(),
            ports: self.ports.0.unwrap_or_default(),
            nested_virtualization: self.nested_virtualization.0.unwrap_or(false),
            disks: self.disks.0.unwrap_or_default(),
            kernel: self.kernel.0.unwrap_or_default(),
            cloud_init: self.cloud_init.0.unwrap_or_default(),
            network: self.network.0.unwrap_or_default(),
            provision: self.provision.0.unwrap_or_default(),
            mounts: self.mounts.0,
        })
    }
}
