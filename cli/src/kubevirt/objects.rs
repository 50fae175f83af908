//! The objects themselves. Field names and nesting follow the upstream OpenAPI
//! documents the tests check them against (KubeVirt `v1.VirtualMachine`, CDI
//! `v1beta1.DataVolume`); Secret and Service follow the Kubernetes core/v1 API.

use super::{Boot, RootDisk, Target, UploadDisk, VmInput, MACHINE_LABEL, PROJECT_LABEL};
use crate::spec::Protocol;
use serde_json::{json, Map, Value};

/// One object: its kind and name (for file names and messages) and its body.
pub struct Manifest {
    pub kind: &'static str,
    pub name: String,
    pub value: Value,
}

/// The volume names inside a VirtualMachine.
const ROOT_VOLUME: &str = "root";
const SEED_VOLUME: &str = "cloud-init";

/// Every object for `machines`, machine by machine (DataVolumes, Secret,
/// VirtualMachine, Service), then the headless Service when there are several.
pub fn manifests(target: &Target, machines: &[VmInput]) -> Vec<Manifest> {
    let headless = super::object_name(target.project, None);
    let subdomain = (machines.len() > 1).then_some(headless.as_str());
    let mut out = Vec::new();
    for vm in machines {
        if let RootDisk::Import {
            url,
            checksum,
            size,
        } = &vm.root
        {
            let source = json!({"http": {"url": url, "checksum": checksum}});
            out.push(data_volume(
                target,
                vm,
                &root_volume_name(vm),
                source,
                *size,
            ));
        }
        for disk in &vm.uploads {
            out.push(data_volume(
                target,
                vm,
                &disk.name,
                json!({"upload": {}}),
                disk.size,
            ));
        }
        out.push(secret(target, vm));
        out.push(virtual_machine(target, vm, subdomain));
        if !vm.ports.is_empty() {
            out.push(port_service(target, vm));
        }
    }
    if let Some(name) = subdomain {
        out.push(headless_service(target, name));
    }
    out
}

/// KubeVirt takes `spec.hostname` as one DNS label (lowercase); hvbox.yaml allows a
/// dotted name in any case. The guest names itself from the seed, which keeps the
/// whole name; the cluster's DNS gets its first label.
pub fn cluster_hostname(hostname: &str) -> String {
    hostname
        .split('.')
        .next()
        .unwrap_or(hostname)
        .to_ascii_lowercase()
}

/// A Kubernetes quantity for a byte count: whole GiB or MiB when it is one.
pub fn quantity(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    if bytes > 0 && bytes % GIB == 0 {
        format!("{}Gi", bytes / GIB)
    } else if bytes > 0 && bytes % MIB == 0 {
        format!("{}Mi", bytes / MIB)
    } else {
        bytes.to_string()
    }
}

fn root_volume_name(vm: &VmInput) -> String {
    format!("{}-root", vm.name)
}

fn secret_name(vm: &VmInput) -> String {
    format!("{}-cloud-init", vm.name)
}

fn labels(target: &Target, vm: &VmInput) -> Value {
    json!({PROJECT_LABEL: target.project, MACHINE_LABEL: vm.machine})
}

fn metadata(target: &Target, name: &str, labels: Value) -> Value {
    let mut meta = json!({"name": name, "labels": labels});
    if let Some(ns) = target.namespace {
        meta["namespace"] = json!(ns);
    }
    meta
}

/// A standalone DataVolume (not a `dataVolumeTemplates` entry: KubeVirt's embedded
/// copy of the DataVolume spec predates CDI's `checksum`).
fn data_volume(target: &Target, vm: &VmInput, name: &str, source: Value, size: u64) -> Manifest {
    Manifest {
        kind: "DataVolume",
        name: name.to_string(),
        value: json!({
            "apiVersion": "cdi.kubevirt.io/v1beta1",
            "kind": "DataVolume",
            "metadata": metadata(target, name, labels(target, vm)),
            "spec": {
                "source": source,
                "storage": {"resources": {"requests": {"storage": quantity(size)}}},
            },
        }),
    }
}

/// The seed's user-data and network-config, under the keys KubeVirt's
/// `cloudInitNoCloud.secretRef` / `networkDataSecretRef` read. Checked by hand
/// against the Kubernetes API reference (core/v1 Secret: apiVersion, kind,
/// metadata, type, stringData), which the upstream documents do not embed.
fn secret(target: &Target, vm: &VmInput) -> Manifest {
    let name = secret_name(vm);
    Manifest {
        kind: "Secret",
        name: name.clone(),
        value: json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata(target, &name, labels(target, vm)),
            "type": "Opaque",
            "stringData": {"userdata": vm.user_data, "networkdata": vm.network_data},
        }),
    }
}

fn virtual_machine(target: &Target, vm: &VmInput, subdomain: Option<&str>) -> Manifest {
    let virtio = json!({"bus": "virtio"});
    let mut disks = vec![
        json!({"name": ROOT_VOLUME, "disk": virtio}),
        json!({"name": SEED_VOLUME, "disk": virtio}),
    ];
    let root = match &vm.root {
        RootDisk::Import { .. } => json!({"dataVolume": {"name": root_volume_name(vm)}}),
        RootDisk::Image { image } => json!({"containerDisk": {"image": image}}),
    };
    let mut root = root.as_object().cloned().unwrap_or_default();
    root.insert("name".into(), json!(ROOT_VOLUME));
    let mut volumes = vec![
        Value::Object(root),
        json!({"name": SEED_VOLUME, "cloudInitNoCloud": {
            "secretRef": {"name": secret_name(vm)},
            "networkDataSecretRef": {"name": secret_name(vm)},
        }}),
    ];
    for UploadDisk {
        name, read_only, ..
    } in &vm.uploads
    {
        let mut disk = json!({"bus": "virtio"});
        if *read_only {
            disk["readonly"] = json!(true);
        }
        disks.push(json!({"name": name, "disk": disk}));
        volumes.push(json!({"name": name, "dataVolume": {"name": name}}));
    }
    let mut domain = json!({
        "cpu": {"cores": vm.cpus},
        "memory": {"guest": quantity(vm.memory)},
        "devices": {
            "disks": disks,
            // Masquerade: the pod's address, and the guest's DHCP as it has locally
            // (passt); the MAC is the one the seed's network-config matches.
            "interfaces": [{
                "name": "default",
                "model": "virtio",
                "macAddress": vm.mac,
                "masquerade": {},
            }],
        },
    });
    if let Boot::Kernel {
        image,
        kernel_path,
        initrd_path,
        cmdline,
    } = &vm.boot
    {
        let mut container = json!({
            "image": image,
            "kernelPath": kernel_path,
            "imagePullPolicy": "IfNotPresent",
        });
        if let Some(initrd) = initrd_path {
            container["initrdPath"] = json!(initrd);
        }
        domain["firmware"] = json!({"kernelBoot": {"kernelArgs": cmdline, "container": container}});
    }
    let mut spec = Map::new();
    spec.insert("hostname".into(), json!(cluster_hostname(&vm.hostname)));
    if let Some(sub) = subdomain {
        spec.insert("subdomain".into(), json!(sub));
    }
    spec.insert("domain".into(), domain);
    spec.insert("networks".into(), json!([{"name": "default", "pod": {}}]));
    spec.insert("volumes".into(), json!(volumes));
    Manifest {
        kind: "VirtualMachine",
        name: vm.name.clone(),
        value: json!({
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "metadata": metadata(target, &vm.name, labels(target, vm)),
            "spec": {
                // As `hvbox up` leaves it: running, and started again if it stops.
                "runStrategy": "Always",
                "template": {
                    "metadata": {"labels": labels(target, vm)},
                    "spec": Value::Object(spec),
                },
            },
        }),
    }
}

/// `ports:` as a ClusterIP Service: the host port becomes the Service's port, the
/// guest port its target. Fields per the Kubernetes API reference (core/v1
/// Service: spec.selector, spec.ports[].name/port/targetPort/protocol).
fn port_service(target: &Target, vm: &VmInput) -> Manifest {
    let ports: Vec<Value> = vm
        .ports
        .iter()
        .map(|p| {
            let protocol = match p.protocol {
                Protocol::Tcp => "TCP",
                Protocol::Udp => "UDP",
            };
            json!({
                "name": format!("{}-{}", protocol.to_lowercase(), p.host.0),
                "port": p.host.0,
                "targetPort": p.guest.0,
                "protocol": protocol,
            })
        })
        .collect();
    Manifest {
        kind: "Service",
        name: vm.name.clone(),
        value: json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(target, &vm.name, labels(target, vm)),
            "spec": {"selector": labels(target, vm), "ports": ports},
        }),
    }
}

/// `clusterIP: None` and the machines' `subdomain`: each machine's hostname
/// resolves as `HOSTNAME.PROJECT` in the namespace. Kubernetes publishes these
/// records for a headless Service without ports.
fn headless_service(target: &Target, name: &str) -> Manifest {
    Manifest {
        kind: "Service",
        name: name.to_string(),
        value: json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(target, name, json!({PROJECT_LABEL: target.project})),
            "spec": {
                "clusterIP": "None",
                "selector": {PROJECT_LABEL: target.project},
            },
        }),
    }
}
