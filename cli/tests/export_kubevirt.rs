//! `hvbox export kubevirt` through the real binary, on small boxes built here (an
//! ext4 root with a kernel, in a GPT disk), served over HTTP or read from a file.
//! No cluster: every VirtualMachine and DataVolume is checked strictly against
//! the OpenAPI definitions of the API that receives it (KubeVirt for the first,
//! CDI for the second: KubeVirt's document embeds an older DataVolume spec whose
//! HTTP source has no `checksum`). The Secret and Services are checked by hand
//! against the Kubernetes core/v1 reference, which neither document embeds.

mod common;
#[path = "../../provisioner/tests/common/mod.rs"]
mod disks;
#[allow(dead_code)]
#[path = "../../tests/src/http.rs"]
mod http;
mod openapi;

use common::{hvbox_isolated, text};
use openapi::Definitions;
use serde_json::{json, Value};
use sha2::{Digest, Sha512};
use std::path::{Path, PathBuf};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/openapi")
        .join(name)
}

fn kubevirt() -> Definitions {
    Definitions::load(&data("kubevirt-v1.VirtualMachine.json"))
}

fn cdi() -> Definitions {
    Definitions::load(&data("cdi-v1beta1.DataVolume.json"))
}

/// A box disk: Debian's layout (two kernels with initrds, fstab), and with
/// `grub` a grub.cfg whose default entry boots the older kernel.
fn box_disk(dir: &Path, grub: bool) -> PathBuf {
    let tree = disks::Tree::new(dir, "root");
    tree.debian_root();
    if grub {
        tree.file(
            "boot/grub/grub.cfg",
            format!(
                "set default=0\nmenuentry 'Debian' {{\n\tlinux\t/boot/vmlinuz-{} root=PARTUUID={} ro quiet console=ttyS0,115200\n\tinitrd\t/boot/initrd.img-{0}\n}}\n",
                disks::K9,
                disks::ROOT_UUID
            )
            .as_bytes(),
        );
    }
    disks::disk_from(dir, &tree)
}

fn sha512(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
    let hex: String = Sha512::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha512:{hex}")
}

struct Setup {
    tmp: tempfile::TempDir,
    project: PathBuf,
}

impl Setup {
    fn new(spec: &str) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let project = tmp.path().join("shop");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join("hvbox.yaml"), spec).unwrap();
        Setup { tmp, project }
    }

    fn home(&self) -> PathBuf {
        self.tmp.path().join("home")
    }

    fn hvbox(&self, args: &[&str]) -> std::process::Output {
        hvbox_isolated(&self.project, &self.home(), args)
    }

    /// `export kubevirt ARGS` to stdout: the objects, and stderr.
    fn export(&self, args: &[&str]) -> (Vec<Value>, String) {
        let mut all = vec!["export", "kubevirt"];
        all.extend_from_slice(args);
        let out = self.hvbox(&all);
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "hvbox {all:?}:\n{stderr}");
        (parse_stream(&text(&out.stdout)), stderr)
    }
}

fn parse_stream(yaml: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| serde_json::to_value(serde_yaml::Value::deserialize(doc).unwrap()).unwrap())
        .collect()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// Each object against its API: the upstream definitions, or (Secret, Service)
/// the fields of Kubernetes' core/v1 reference that hvbox writes.
fn check_all(objects: &[Value]) {
    let (kubevirt, cdi) = (kubevirt(), cdi());
    for o in objects {
        let problems = match o["kind"].as_str().unwrap() {
            "VirtualMachine" => {
                assert_eq!(o["apiVersion"], "kubevirt.io/v1");
                kubevirt.check(o)
            }
            "DataVolume" => {
                assert_eq!(o["apiVersion"], "cdi.kubevirt.io/v1beta1");
                cdi.check(o)
            }
            "Secret" => check_core(o, &["type", "stringData"], &["userdata", "networkdata"]),
            "Service" => check_core(o, &["spec"], &[]),
            other => panic!("unexpected kind {other}"),
        };
        assert!(
            problems.is_empty(),
            "{}:\n{}",
            o["kind"],
            problems.join("\n")
        );
    }
}

/// core/v1 Secret: apiVersion, kind, metadata, type, data, stringData, immutable;
/// Service: spec.{selector, ports[].{name, port, targetPort, protocol}, clusterIP};
/// ObjectMeta: name, namespace, labels. (Kubernetes API reference, v1.31.)
fn check_core(o: &Value, fields: &[&str], data_keys: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut known: Vec<&str> = vec!["apiVersion", "kind", "metadata"];
    known.extend_from_slice(fields);
    for key in o.as_object().unwrap().keys() {
        if !known.contains(&key.as_str()) {
            problems.push(format!("unknown field {key}"));
        }
    }
    if o["apiVersion"] != "v1" {
        problems.push(format!("apiVersion {}", o["apiVersion"]));
    }
    for key in o["metadata"].as_object().unwrap().keys() {
        if !["name", "namespace", "labels"].contains(&key.as_str()) {
            problems.push(format!("unknown metadata field {key}"));
        }
    }
    if o["kind"] == "Secret" {
        if o["type"] != "Opaque" {
            problems.push("type is not Opaque".into());
        }
        let keys: Vec<&String> = o["stringData"].as_object().unwrap().keys().collect();
        if keys.len() != data_keys.len()
            || data_keys
                .iter()
                .any(|k| o["stringData"][k].as_str().is_none())
        {
            problems.push(format!("stringData keys {keys:?}"));
        }
    } else {
        for key in o["spec"].as_object().unwrap().keys() {
            if !["selector", "ports", "clusterIP"].contains(&key.as_str()) {
                problems.push(format!("unknown spec field {key}"));
            }
        }
        for port in o["spec"]["ports"].as_array().into_iter().flatten() {
            for key in port.as_object().unwrap().keys() {
                if !["name", "port", "targetPort", "protocol"].contains(&key.as_str()) {
                    problems.push(format!("unknown port field {key}"));
                }
            }
            if !["TCP", "UDP"].contains(&port["protocol"].as_str().unwrap_or("")) {
                problems.push(format!("protocol {}", port["protocol"]));
            }
        }
    }
    problems
}

#[test]
fn the_validator_is_strict() {
    let kubevirt = kubevirt();
    assert_eq!(kubevirt.root, "v1.VirtualMachine");
    assert!(
        kubevirt.version.contains("d923fdb815"),
        "{}",
        kubevirt.version
    );
    let vm = json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": "x"},
        "spec": {"runStrategy": "Always", "template": {"spec": {"domain": {"devices": {}}}}},
    });
    assert_eq!(kubevirt.check(&vm), Vec::<String>::new());
    let mut bad = vm.clone();
    bad["spec"]["template"]["spec"]["domain"]["cpu"] = json!({"cores": "two", "turbo": true});
    bad["spec"]["template"]["spec"]["domain"]["firmware"] =
        json!({"kernelBoot": {"container": {"imagePullPolicy": "Sometimes"}}});
    bad["spec"]["template"]["spec"]["domain"]["devices"] = Value::Null;
    let problems = kubevirt.check(&bad).join("\n");
    for want in [
        "$.spec.template.spec.domain.cpu.cores: \"two\" is not of type integer",
        "$.spec.template.spec.domain.cpu.turbo: unknown field `turbo`",
        "kernelBoot.container: the required field `image` is missing",
        "kernelBoot.container.imagePullPolicy: \"Sometimes\" is not one of",
        "$.spec.template.spec.domain.devices: null is not of type object",
    ] {
        assert!(problems.contains(want), "{want}\nin:\n{problems}");
    }
    // What KubeVirt's own copy of the DataVolume spec says of a checksum: unknown.
    let dv = json!({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
        "metadata": {"name": "x"},
        "spec": {"source": {"http": {"url": "http://h/d", "checksum": "sha256:00"}}}});
    assert_eq!(cdi().check(&dv), Vec::<String>::new());
    let template = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": "x"},
        "spec": {"dataVolumeTemplates": [{"metadata": {"name": "x"}, "spec": dv["spec"]}],
            "template": {"spec": {"domain": {"devices": {}}}}}});
    assert!(
        kubevirt
            .check(&template)
            .join("\n")
            .contains("http.checksum: unknown field `checksum`"),
        "{:?}",
        kubevirt.check(&template)
    );
}

#[test]
fn a_machine_exports_as_objects_the_cluster_accepts() {
    let setup = Setup::new("");
    let served = setup.tmp.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    let disk = box_disk(&setup.tmp.path().join("build"), true);
    std::fs::copy(&disk, served.join("disk.img")).unwrap();
    let digest = sha512(&disk);
    let server = http::HttpServer::serve(served);
    let url = server.url("disk.img");
    std::fs::write(setup.project.join("data.img"), vec![0u8; 3 << 20]).unwrap();
    std::fs::write(
        setup.project.join("hvbox.yaml"),
        format!(
            "box:\n  disk:\n    url: {url}\n    digest: \"{digest}\"\ncpus: 2\nmemory: 1536M\ndisk: 4G\n\
             ports:\n  - {{host: 8080, guest: 80}}\n  - {{host: 5353, guest: 53, protocol: udp}}\n\
             disks:\n  - {{path: data.img, read_only: true}}\n"
        ),
    )
    .unwrap();
    let (objects, stderr) = setup.export(&["--namespace", "team"]);
    check_all(&objects);
    let kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "DataVolume",
            "DataVolume",
            "Secret",
            "VirtualMachine",
            "Service"
        ],
        "{objects:#?}"
    );
    let root = of_kind(&objects, "DataVolume")[0];
    assert_eq!(root["metadata"]["name"], "shop-root");
    assert_eq!(root["metadata"]["namespace"], "team");
    assert_eq!(
        root["spec"]["source"],
        json!({"http": {"url": url, "checksum": digest}})
    );
    assert_eq!(
        root["spec"]["storage"]["resources"]["requests"]["storage"],
        "4Gi"
    );
    let upload = of_kind(&objects, "DataVolume")[1];
    assert_eq!(upload["spec"]["source"], json!({"upload": {}}));
    assert_eq!(
        upload["spec"]["storage"]["resources"]["requests"]["storage"],
        "3Mi"
    );

    let vm = of_kind(&objects, "VirtualMachine")[0];
    let labels = json!({"hvbox/project": "shop", "hvbox/machine": "default"});
    assert_eq!(vm["metadata"]["labels"], labels);
    assert_eq!(vm["spec"]["runStrategy"], "Always");
    let template = &vm["spec"]["template"];
    assert_eq!(template["metadata"]["labels"], labels);
    let domain = &template["spec"]["domain"];
    assert_eq!(domain["cpu"], json!({"cores": 2}));
    assert_eq!(domain["memory"], json!({"guest": "1536Mi"}));
    // The box has grub: its firmware boots it, no kernel image needed.
    assert!(domain.get("firmware").is_none(), "{domain:#}");
    let disks = domain["devices"]["disks"].as_array().unwrap();
    assert!(
        disks.iter().all(|d| d["disk"]["bus"] == "virtio"),
        "{disks:#?}"
    );
    assert_eq!(disks[2]["disk"]["readonly"], true);
    let volumes = template["spec"]["volumes"].as_array().unwrap();
    assert_eq!(
        volumes[0],
        json!({"name": "root", "dataVolume": {"name": "shop-root"}})
    );
    assert_eq!(
        volumes[1]["cloudInitNoCloud"],
        json!({"secretRef": {"name": "shop-cloud-init"}, "networkDataSecretRef": {"name": "shop-cloud-init"}})
    );
    assert!(template["spec"].get("subdomain").is_none());

    let service = of_kind(&objects, "Service")[0];
    assert_eq!(service["spec"]["selector"], labels);
    assert_eq!(
        service["spec"]["ports"],
        json!([
            {"name": "tcp-8080", "port": 8080, "targetPort": 80, "protocol": "TCP"},
            {"name": "udp-5353", "port": 5353, "targetPort": 53, "protocol": "UDP"},
        ])
    );

    // What does not carry over, and how to reach the machine.
    for want in [
        "hvbox: note: mounts: host folders (",
        "virtctl image-upload dv shop-disk1 --no-create --image-path=",
        "known_hosts: hvbox-i-",
        "virtctl ssh -n team --local-ssh -i ",
        "dev@vm/shop",
        "virtctl port-forward -n team vm/shop 8080:80",
    ] {
        assert!(stderr.contains(want), "{want}\nin:\n{stderr}");
    }
    // The identity made for the cluster is kept: a second export pins the same key.
    let identity = setup.project.join(".hvbox/kubevirt/default");
    assert!(identity.join("state.json").is_file());
    let (again, _) = setup.export(&["--namespace", "team"]);
    assert_eq!(again, objects);
}

/// The local machine's seed, written by `up`, and the Secret carry the same
/// documents byte for byte.
#[test]
fn the_secret_carries_the_local_seed_documents() {
    let setup = Setup::new("");
    let disk = box_disk(&setup.tmp.path().join("build"), false);
    std::fs::write(
        setup.project.join("hvbox.yaml"),
        format!(
            "box:\n  disk:\n    url: file://{}\n    digest: \"{}\"\nengine: qemu\n\
             cloud_init:\n  packages: [git]\n  runcmd: [\"echo hi\"]\n\
             network:\n  nameservers: [9.9.9.9]\n",
            disk.display(),
            sha512(&disk)
        ),
    )
    .unwrap();
    // A created machine (identity and keys as `up` makes them) whose disk is gone:
    // `up` rewrites its seed, then stops at the missing disk.
    let machine = setup.project.join(".hvbox/machines/default");
    common::create_stopped_machine(&machine);
    for key in ["id_ed25519", "ssh_host_ed25519_key"] {
        let out = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "t", "-f"])
            .arg(machine.join(key))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let up = setup.hvbox(&["up"]);
    assert!(!up.status.success());
    assert!(
        text(&up.stderr).contains("disk.raw"),
        "up stopped elsewhere than at the missing disk:\n{}",
        text(&up.stderr)
    );
    let seed = machine.join("seed.iso");
    assert!(seed.is_file(), "up wrote no seed:\n{}", text(&up.stderr));
    let from_seed = |name: &str| {
        let out = std::process::Command::new("isoinfo")
            .args(["-R", "-i"])
            .arg(&seed)
            .args(["-x", &format!("/{name}")])
            .output()
            .expect("isoinfo (genisoimage)");
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };

    let (objects, stderr) = setup.export(&["--registry", "registry.example/team"]);
    check_all(&objects);
    let secret = of_kind(&objects, "Secret")[0];
    let user_data = from_seed("user-data");
    assert!(user_data.contains("9.9.9.9") || from_seed("network-config").contains("9.9.9.9"));
    assert_eq!(
        secret["stringData"]["userdata"].as_str().unwrap(),
        user_data
    );
    assert_eq!(
        secret["stringData"]["networkdata"].as_str().unwrap(),
        from_seed("network-config")
    );
    // The network-config matches the NIC by the machine's MAC: the VM has it.
    let vm = of_kind(&objects, "VirtualMachine")[0];
    assert_eq!(
        vm["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][0]["macAddress"],
        "52:54:00:12:34:56"
    );
    // The local machine's pinned host key is the one printed.
    let public = std::fs::read_to_string(machine.join("ssh_host_ed25519_key.pub")).unwrap();
    let key = public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        stderr.contains(&format!("known_hosts: hvbox-{} {key}", common::INSTANCE)),
        "{stderr}"
    );
    assert!(!setup.project.join(".hvbox/kubevirt").exists());
}

/// A machine made here gets the host's proxies through its seed, a loopback one at
/// the address passt gives the guest for the host, said on standard error; the
/// export for a cluster does not carry them.
#[test]
fn up_passes_the_hosts_proxies_into_the_seed() {
    let setup = Setup::new("");
    let disk = box_disk(&setup.tmp.path().join("build"), false);
    std::fs::write(
        setup.project.join("hvbox.yaml"),
        format!(
            "box:\n  disk:\n    url: file://{}\n    digest: \"{}\"\nengine: qemu\n",
            disk.display(),
            sha512(&disk)
        ),
    )
    .unwrap();
    // `up` makes the machine, seed included, and boots it on a stand-in QEMU that
    // exits at once: the seed is what this test reads.
    let bin = setup.tmp.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let qemu = bin.join("qemu-system-x86_64");
    std::fs::write(
        &qemu,
        "#!/bin/sh\ncase \"$1\" in --version) echo \"QEMU emulator version 8.2.2\";; esac\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&qemu, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let machine = setup.project.join(".hvbox/machines/default");
    let vars = [
        ("http_proxy", "http://127.0.0.1:3128"),
        ("HTTPS_PROXY", "http://proxy.example.org:8080"),
        ("no_proxy", "localhost,.example.org"),
        ("PATH", path.as_str()),
    ];
    let up = common::hvbox_isolated_with(&setup.project, &setup.home(), &["up"], &vars);
    let stderr = text(&up.stderr);
    assert!(!up.status.success(), "{stderr}");
    assert!(machine.join("seed.iso").exists(), "no seed: {stderr}");
    let user_data = {
        let out = std::process::Command::new("isoinfo")
            .args(["-R", "-i"])
            .arg(machine.join("seed.iso"))
            .args(["-x", "/user-data"])
            .output()
            .expect("isoinfo (genisoimage)");
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let doc: Value =
        serde_json::from_str(user_data.strip_prefix("#cloud-config\n").unwrap()).unwrap();
    let https = "http://proxy.example.org:8080";
    // The guest reaches the host's loopback at passt's gateway: the host's own.
    let http = doc["apt"]["http_proxy"].as_str().unwrap().to_string();
    let gateway = http
        .strip_prefix("http://")
        .and_then(|h| h.strip_suffix(":3128"))
        .unwrap();
    let gateway: std::net::Ipv4Addr = gateway.parse().unwrap();
    assert!(!gateway.is_loopback(), "{http}");
    let route = std::fs::read_to_string("/proc/net/route").unwrap();
    let hex = format!("{:08X}", u32::from_le_bytes(gateway.octets()));
    assert!(
        route
            .lines()
            .any(|l| l.split_whitespace().nth(2) == Some(&hex)),
        "{hex} in\n{route}"
    );
    assert!(
        stderr.contains(&format!(
            "hvbox: note: http_proxy=http://127.0.0.1:3128 is on this host's loopback; machines get {http}"
        )),
        "{stderr}"
    );
    assert_eq!(doc["apt"]["https_proxy"], https);
    assert_eq!(
        doc["write_files"][0],
        serde_json::json!({
            "path": "/etc/environment",
            "append": true,
            "content": format!(
                "http_proxy=\"{http}\"\nHTTP_PROXY=\"{http}\"\nhttps_proxy=\"{https}\"\nHTTPS_PROXY=\"{https}\"\n\
                 no_proxy=\"localhost,.example.org\"\nNO_PROXY=\"localhost,.example.org\"\n"
            ),
        })
    );

    let mut all = vec!["export", "kubevirt"];
    all.push("--registry");
    all.push("registry.example/team");
    let out = common::hvbox_isolated_with(&setup.project, &setup.home(), &all, &vars);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stdout).contains("proxy"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn several_machines_boot_their_kernel_from_an_image() {
    let setup = Setup::new("");
    let disk = box_disk(&setup.tmp.path().join("build"), false);
    let digest = sha512(&disk);
    std::fs::write(
        setup.project.join("hvbox.yaml"),
        format!(
            "box:\n  disk:\n    url: file://{}\n    digest: \"{digest}\"\nmounts: []\n\
             kernel:\n  cmdline_append: \"quiet loglevel=3\"\n\
             machines:\n  web:\n    ports: [{{host: 8080, guest: 80}}]\n  db:\n    memory: 1G\n    hostname: database\n",
            disk.display()
        ),
    )
    .unwrap();
    let (objects, stderr) = setup.export(&["--registry", "registry.example/team/", "db", "web"]);
    check_all(&objects);
    let vms = of_kind(&objects, "VirtualMachine");
    let names: Vec<&str> = vms
        .iter()
        .map(|v| v["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["shop-db", "shop-web"]);
    assert!(of_kind(&objects, "DataVolume").is_empty());
    let hex = &digest["sha512:".len()..];
    for vm in &vms {
        let spec = &vm["spec"]["template"]["spec"];
        assert_eq!(spec["subdomain"], "shop");
        assert_eq!(
            spec["volumes"][0]["containerDisk"]["image"],
            format!("registry.example/team/disk.img:sha512-{}", &hex[..16])
        );
        // Debian's newest kernel (no bootloader names another), with the command
        // line hvbox boots it with: the guest's own, the spec's, the console and NIC name.
        assert_eq!(
            spec["domain"]["firmware"]["kernelBoot"],
            json!({
                "kernelArgs": format!("root=PARTUUID={} ro quiet loglevel=3 console=ttyS0 net.ifnames=0", disks::ROOT_UUID),
                "container": {
                    "image": format!("registry.example/team/disk.img-kernel:sha512-{}", &hex[..16]),
                    "kernelPath": "/boot/vmlinuz",
                    "initrdPath": "/boot/initrd.img",
                    "imagePullPolicy": "IfNotPresent",
                },
            })
        );
    }
    assert_eq!(vms[0]["spec"]["template"]["spec"]["hostname"], "database");
    assert_eq!(
        vms[0]["spec"]["template"]["spec"]["domain"]["memory"]["guest"],
        "1Gi"
    );
    let services = of_kind(&objects, "Service");
    assert_eq!(services.len(), 2, "web's ports and the headless one");
    let headless = services.last().unwrap();
    assert_eq!(
        headless["spec"],
        json!({"clusterIP": "None", "selector": {"hvbox/project": "shop"}})
    );
    // How to make and push the images the objects name.
    for want in [
        format!("hvbox box export {} --oci disk.img.tar --kernel-oci disk.img-kernel.tar", &digest[..23]),
        format!("skopeo copy oci-archive:disk.img.tar docker://registry.example/team/disk.img:sha512-{}", &hex[..16]),
        format!("skopeo copy oci-archive:disk.img-kernel.tar docker://registry.example/team/disk.img-kernel:sha512-{}", &hex[..16]),
    ] {
        assert!(stderr.contains(&want), "{want}\nin:\n{stderr}");
    }
    assert!(
        stderr.contains("upgrade-kernel: the kernel comes from its image"),
        "{stderr}"
    );
    assert!(!stderr.contains("mounts:"), "{stderr}");

    // Into a folder: one file per object, for `kubectl apply -f`.
    let out_dir = setup.tmp.path().join("k8s");
    let out = setup.hvbox(&[
        "export",
        "kubevirt",
        "--registry",
        "registry.example/team",
        "--output",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut files: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "secret-shop-db-cloud-init.yaml",
            "secret-shop-web-cloud-init.yaml",
            "service-shop-web.yaml",
            "service-shop.yaml",
            "virtualmachine-shop-db.yaml",
            "virtualmachine-shop-web.yaml",
        ]
    );
    assert!(text(&out.stdout).contains("virtctl ssh --local-ssh"));
}

#[test]
fn what_a_cluster_cannot_fetch_or_boot_is_an_error() {
    let setup = Setup::new("");
    let disk = box_disk(&setup.tmp.path().join("build"), true);
    std::fs::write(
        setup.project.join("hvbox.yaml"),
        format!(
            "box:\n  disk:\n    url: file://{}\n    digest: \"{}\"\n",
            disk.display(),
            sha512(&disk)
        ),
    )
    .unwrap();
    let out = setup.hvbox(&["export", "kubevirt"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("which a cluster cannot download: pass --registry PREFIX"),
        "{stderr}"
    );
    assert!(text(&out.stdout).is_empty());
    // Refused before a key was made for it.
    assert!(!setup.project.join(".hvbox/kubevirt").exists());

    // Served, but without a bootloader: its kernel must come from an image.
    let served = setup.tmp.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    let bare = box_disk(&setup.tmp.path().join("bare"), false);
    std::fs::copy(&bare, served.join("disk.img")).unwrap();
    let server = http::HttpServer::serve(served);
    std::fs::write(
        setup.project.join("hvbox.yaml"),
        format!(
            "box:\n  disk:\n    url: {}\n    digest: \"{}\"\n",
            server.url("disk.img"),
            sha512(&bare)
        ),
    )
    .unwrap();
    let out = setup.hvbox(&["export", "kubevirt"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the box has no bootloader"),
        "{}",
        text(&out.stderr)
    );

    let out = setup.hvbox(&["export", "kubevirt", "--namespace", "Team_1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--namespace \"Team_1\" is not a Kubernetes namespace name"));
}
