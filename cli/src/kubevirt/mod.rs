//! A project's machines as KubeVirt objects: per machine a `VirtualMachine`, the
//! `DataVolume`s its disks are imported into, a `Secret` with its cloud-init seed
//! documents and a `Service` for its `ports:`; for several machines, a headless
//! `Service` so they reach each other by name. Plain data in, JSON values out: what
//! hvbox knows about a machine is gathered by `hvbox export kubevirt`.

mod objects;

pub use objects::{manifests, Manifest};

use crate::spec::PortForward;

/// The labels every object carries; the Services select the machines by them.
pub const PROJECT_LABEL: &str = "hvbox/project";
pub const MACHINE_LABEL: &str = "hvbox/machine";

/// Where the objects go.
pub struct Target<'a> {
    /// `None`: the namespace `kubectl apply` uses.
    pub namespace: Option<&'a str>,
    /// The project's name as a label value (its default hostname).
    pub project: &'a str,
}

/// A name for an object of the project (`machine`: of one of its machines) that
/// Kubernetes takes for a VirtualMachine and a Service alike: a DNS-1035 label,
/// at most 63 characters starting with a letter. The project's part gives way.
pub fn object_name(project: &str, machine: Option<&str>) -> String {
    let base = if project.starts_with(|c: char| c.is_ascii_lowercase()) {
        project.to_string()
    } else {
        format!("hvbox-{project}")
    };
    let suffix = machine.map(|m| format!("-{m}")).unwrap_or_default();
    let room = 63 - suffix.len();
    let base: String = base.chars().take(room).collect();
    format!("{}{suffix}", base.trim_end_matches('-'))
}

#[cfg(test)]
mod tests {
    use super::object_name;

    #[test]
    fn object_names_are_dns_labels() {
        assert_eq!(object_name("shop", None), "shop");
        assert_eq!(object_name("shop", Some("web")), "shop-web");
        assert_eq!(object_name("2024-app", Some("db")), "hvbox-2024-app-db");
        let long = "a".repeat(40) + "-" + &"b".repeat(22);
        let name = object_name(&long, Some(&"m".repeat(32)));
        assert_eq!(name, format!("{}-{}", "a".repeat(30), "m".repeat(32)));
        assert_eq!(name.len(), 63);
        assert_eq!(object_name(&long, None), long);
    }

    #[test]
    fn the_cluster_gets_the_hostnames_first_label_in_lowercase() {
        use super::objects::cluster_hostname;
        assert_eq!(cluster_hostname("Web.example.com"), "web");
        assert_eq!(cluster_hostname("database"), "database");
    }
}

/// One machine, as the cluster gets it.
pub struct VmInput {
    /// The object name: the project's, or `PROJECT-MACHINE` for a named machine.
    pub name: String,
    /// The machine's name in hvbox.yaml.
    pub machine: String,
    pub hostname: String,
    pub cpus: u32,
    pub memory: u64,
    /// The MAC the seed's network-config matches.
    pub mac: String,
    pub root: RootDisk,
    pub boot: Boot,
    /// The spec's `disks:`, uploaded by the user into DataVolumes of these sizes.
    pub uploads: Vec<UploadDisk>,
    /// The seed's documents, as the local seed has them.
    pub user_data: String,
    pub network_data: String,
    pub ports: Vec<PortForward>,
}

/// Where the root disk comes from.
pub enum RootDisk {
    /// CDI imports the box's own download and checks its digest.
    Import {
        url: String,
        /// `sha256:…` or `sha512:…`, the form CDI's `checksum` takes.
        checksum: String,
        size: u64,
    },
    /// A containerDisk image (`hvbox box export --oci`): ephemeral, as KubeVirt's
    /// containerDisks are.
    Image { image: String },
}

/// How the machine boots.
pub enum Boot {
    /// The disk's own bootloader, through the VM's firmware.
    Bootloader,
    /// Direct kernel boot, as hvbox boots locally: kernel and initrd from an image
    /// (`hvbox box export --kernel-oci`).
    Kernel {
        image: String,
        kernel_path: String,
        initrd_path: Option<String>,
        cmdline: String,
    },
}

/// A spec `disks:` image, uploaded with `virtctl image-upload`.
pub struct UploadDisk {
    /// The DataVolume's name.
    pub name: String,
    pub size: u64,
    pub read_only: bool,
}

pub mod images;
