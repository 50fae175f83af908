//! `hvbox export kubevirt [NAME…]`: the machines as KubeVirt objects. Everything a
//! machine is made of comes from the code `up` uses: the box from hvbox.lock (or the
//! catalog, then locked), the seed from [`crate::seed`], the kernel command line
//! from the box's disk as [`crate::launch`] reads it, the identity (keys, MAC) of
//! the local machine when it exists, else one made for the cluster and kept in
//! `.hvbox/kubevirt/NAME/` so that later exports pin the same host key (see
//! [`identity_of`]).

use super::box_fetch::{self, ProjectBox, Resolve};
use super::select::{Need, Selection, Target};
use crate::args::ExportKubevirtArgs;
use crate::kernel_install::shell_quote;
use crate::kubevirt::{self, images, Boot, Manifest, RootDisk, UploadDisk, VmInput};
use crate::lockfile;
use crate::machine::{Machine, MachineState};
use crate::project::Project;
use crate::spec::{mounts, Spec, DEFAULT_MACHINE};
use crate::{identity, keys, ssh};
use anyhow::{bail, Context, Result};
use hvbox_boxes::formats::{Compression, Container};
use hvbox_boxes::{Progress, Store};
use hvbox_provisioner::{boot_menu, extract_boot_files, KernelSelection};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

pub fn run(args: &ExportKubevirtArgs) -> Result<ExitCode> {
    let to_stdout = args.output.as_os_str() == "-";
    if to_stdout {
        crate::progress::to_stderr();
    }
    if let Some(prefix) = &args.registry {
        images::check_prefix(prefix).map_err(super::BadArguments)?;
    }
    if let Some(ns) = &args.namespace {
        check_dns_label(ns, "--namespace")?;
    }
    let selection = Selection::load(Need::Settings)?;
    let project = &selection.project;
    let targets = selection.many(&args.names, false)?;
    let specs: Vec<&Spec> = targets.iter().map(Target::spec).collect::<Result<_>>()?;
    let store = Store::open_default()?;
    let sources: Vec<_> = specs.iter().map(|s| &s.box_source).collect();
    let boxes = box_fetch::fetch_boxes(
        project,
        selection.spec()?,
        &sources,
        &store,
        Progress::Auto,
        Resolve::UseLock,
    )?;
    let project_label = project.default_hostname();
    let mut notes = Notes::default();
    let mut machines = Vec::new();
    let mut access = Vec::new();
    // Everything that can refuse a machine is checked before any identity is made.
    let mut placed = Vec::new();
    for (target, spec) in targets.iter().zip(&specs) {
        let requested = lockfile::requested(&spec.box_source);
        let got = boxes
            .iter()
            .find(|b| b.locked.requested == requested)
            .context("the machine's box was not fetched")?;
        let name = object_name(&project_label, target.name(), targets.len() > 1);
        placed.push(place(project, spec, target, got, &name, args, &mut notes)?);
    }
    let mut to_push: Vec<Images> = Vec::new();
    for images in placed.iter().filter_map(|p| p.images.clone()) {
        if !to_push.contains(&images) {
            to_push.push(images);
        }
    }
    for ((target, spec), place) in targets.iter().zip(&specs).zip(placed) {
        let (machine, state) = identity_of(project, spec, target, place.got)?;
        // The same seed the local machine has (its mounts' boot script included:
        // it only says, on the console, that no share is there).
        let seed = crate::seed::seed_config(project, spec, &machine, &state)?;
        machines.push(VmInput {
            name: place.name.clone(),
            machine: target.name().to_string(),
            hostname: state.hostname.clone(),
            cpus: spec.cpus.0,
            memory: spec.memory.bytes(),
            mac: state.mac.to_string(),
            root: place.root,
            boot: place.boot,
            uploads: place.uploads,
            user_data: hvbox_cloud_init::user_data(&seed).context("building the user-data")?,
            network_data: hvbox_cloud_init::network_config(&seed)
                .context("building the network-config")?,
            ports: spec.forwards(),
        });
        access.push(Access {
            vm: place.name,
            machine,
            state,
            ports: spec
                .forwards()
                .iter()
                .map(|p| (p.host.0, p.guest.0))
                .collect(),
        });
    }
    let target = kubevirt::Target {
        namespace: args.namespace.as_deref(),
        project: &project_label,
    };
    let objects = kubevirt::manifests(&target, &machines);
    if to_stdout {
        print!("{}", yaml_stream(&objects)?);
    } else {
        write_dir(&args.output, &objects)?;
    }
    notes.print();
    print_access(&access, &to_push, args.namespace.as_deref(), to_stdout)?;
    Ok(ExitCode::SUCCESS)
}

/// A Kubernetes name for the machine: the project's for the only, unnamed machine,
/// `PROJECT-MACHINE` otherwise.
/// The project's name alone for its one unnamed machine; with several, every machine
/// (`default` too) has its own suffix, as the headless Service has the project's name.
fn object_name(project: &str, machine: &str, several: bool) -> String {
    kubevirt::object_name(
        project,
        (several || machine != DEFAULT_MACHINE).then_some(machine),
    )
}

fn check_dns_label(value: &str, what: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if !ok {
        return Err(super::BadArguments(format!(
            "{what} {value:?} is not a Kubernetes namespace name: lowercase letters, digits and '-', at most 63"
        ))
        .into());
    }
    Ok(())
}

/// The identity made for the cluster by an earlier export (so a deployed machine
/// keeps its keys), else the local machine's when it was created, else a new one
/// for the cluster.
fn identity_of(
    project: &Project,
    spec: &Spec,
    target: &Target,
    got: &ProjectBox,
) -> Result<(Machine, MachineState)> {
    let name = target.name();
    let machine = Machine::new(name, project.state_dir().join("kubevirt").join(name));
    if machine.is_created() {
        let state = machine.load_state()?;
        return Ok((machine, state));
    }
    if target.machine.is_created() {
        let state = target.machine.load_state()?;
        return Ok((target.machine.clone(), state));
    }
    crate::machine::private::create_machine_dir(&machine.dir)?;
    let made = identity::new_state(project, spec, &got.artifacts).and_then(|state| {
        identity::write_keys(&machine, &state)?;
        // state.json last: its presence marks a finished identity.
        state.save(&machine.state_path())?;
        Ok(state)
    });
    match made {
        Ok(state) => Ok((machine, state)),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&machine.dir);
            Err(e)
        }
    }
}

/// Where a machine's disks and kernel come from on the cluster.
struct Placement<'a> {
    got: &'a ProjectBox,
    /// With --registry: the images to push, as `hvbox box export` writes them.
    images: Option<Images>,
    name: String,
    root: RootDisk,
    boot: Boot,
    uploads: Vec<UploadDisk>,
}

fn place<'a>(
    project: &Project,
    spec: &Spec,
    target: &Target,
    got: &'a ProjectBox,
    name: &str,
    args: &ExportKubevirtArgs,
    notes: &mut Notes,
) -> Result<Placement<'a>> {
    // Messages name the machine where the project names its machines.
    let who = if target.named {
        format!("machine `{}`: ", target.name())
    } else {
        String::new()
    };
    let disk = &got.fetched.disk;
    let box_size = std::fs::metadata(&disk.path)
        .with_context(|| format!("reading {}", disk.path.display()))?
        .len();
    let artifact = &got.artifacts.disk;
    let mut pushed = None;
    let (root, boot) = match &args.registry {
        Some(prefix) => {
            let (disk_image, kernel_image) =
                images::names(prefix, &got.artifacts.name, &artifact.digest);
            pushed = Some(Images {
                box_name: got.artifacts.name.clone(),
                digest: artifact.digest.to_string(),
                disk: disk_image.clone(),
                kernel: kernel_image.clone(),
            });
            let boot = kernel_boot(spec, &disk.path, kernel_image)?;
            if spec.disk.is_some_and(|d| d.bytes() > box_size) {
                notes.add(format!(
                    "{who}disk: {} does not apply to a containerDisk, which has the box's size and forgets its writes at each restart; without --registry the root disk is a DataVolume of that size",
                    spec.disk.expect("checked")
                ));
            }
            (RootDisk::Image { image: disk_image }, boot)
        }
        None => {
            check_importable(&who, &artifact.url, disk.meta.as_ref().map(|m| m.format))?;
            let size = spec.disk.map_or(box_size, |d| d.bytes().max(box_size));
            let root = RootDisk::Import {
                url: artifact.url.clone(),
                checksum: artifact.digest.to_string(),
                size,
            };
            (root, firmware_boot(&who, spec, &disk.path, notes)?)
        }
    };
    let uploads = upload_disks(project, spec, name, &who, notes)?;
    say_what_stays_behind(project, spec, &who, &boot, notes);
    Ok(Placement {
        got,
        images: pushed,
        name: name.to_string(),
        root,
        boot,
        uploads,
    })
}

/// Direct kernel boot with the command line `up` would boot the box's default
/// kernel with.
fn kernel_boot(spec: &Spec, disk: &Path, image: String) -> Result<Boot> {
    let scratch = tempfile::tempdir().context("creating a temporary folder")?;
    let files = extract_boot_files(
        disk,
        scratch.path(),
        &KernelSelection::Default,
        spec.memory.bytes(),
    )
    .context("finding the guest's kernel in the box's disk")?;
    Ok(Boot::Kernel {
        image,
        kernel_path: images::KERNEL_PATH.to_string(),
        initrd_path: files
            .initrd
            .is_some()
            .then(|| images::INITRD_PATH.to_string()),
        cmdline: spec
            .kernel
            .cmdline(&files.cmdline, crate::launch::GUEST_ARGS),
    })
}

/// Without a kernel image the VM's firmware boots the disk's own bootloader, which
/// a box made by `hvbox box build` does not have.
fn firmware_boot(who: &str, spec: &Spec, disk: &Path, notes: &mut Notes) -> Result<Boot> {
    let menu = boot_menu(disk).context("reading the kernels in the box's disk")?;
    if menu.decided_by.is_none() {
        bail!(
            "{who}the box has no bootloader (hvbox boots its kernel directly), so on a cluster its kernel must come from an image: pass --registry PREFIX, and push the images `hvbox box export` writes"
        );
    }
    if spec.kernel.cmdline.is_some() || spec.kernel.cmdline_append.is_some() {
        notes.add(format!(
            "{who}kernel: the command line is the bootloader's on a cluster, without hvbox.yaml's changes; --registry boots the kernel directly with them"
        ));
    }
    Ok(Boot::Bootloader)
}

/// CDI fetches the URL itself, and unpacks qcow2, gzip and xz, not tarballs.
fn check_importable(who: &str, url: &str, format: Option<hvbox_boxes::Format>) -> Result<()> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!(
            "{who}the box's disk is {url}, which a cluster cannot download: pass --registry PREFIX to boot it from an image `hvbox box export` writes"
        );
    }
    if let Some(f) = format {
        let container_ok = matches!(f.container, Container::Raw | Container::Qcow2);
        let compression_ok = matches!(
            f.compression,
            None | Some(Compression::Gzip | Compression::Xz)
        );
        if !container_ok || !compression_ok {
            bail!(
                "{who}the box's disk is a {f} download, which CDI cannot import (it takes raw or qcow2, plain, gzip or xz): pass --registry PREFIX to boot it from an image `hvbox box export` writes"
            );
        }
    }
    Ok(())
}

/// The spec's `disks:` are host files: each becomes an empty DataVolume for
/// `virtctl image-upload` to fill.
fn upload_disks(
    project: &Project,
    spec: &Spec,
    name: &str,
    who: &str,
    notes: &mut Notes,
) -> Result<Vec<UploadDisk>> {
    let mut out = Vec::new();
    for (i, disk) in spec.disks.iter().enumerate() {
        let path = project.root.join(&disk.path);
        let size = std::fs::metadata(&path)
            .with_context(|| format!("{who}reading the size of disk {}", path.display()))?
            .len();
        let dv = format!("{name}-disk{}", i + 1);
        notes.add(format!(
            "{who}disks: {} is a file on this host: upload it into its DataVolume with `virtctl image-upload dv {dv} --no-create --image-path={}`",
            disk.path.display(),
            shell_quote(&path.to_string_lossy())
        ));
        out.push(UploadDisk {
            name: dv,
            size,
            read_only: disk.read_only,
        });
    }
    Ok(out)
}

/// What hvbox does locally that the objects cannot.
fn say_what_stays_behind(
    project: &Project,
    spec: &Spec,
    who: &str,
    boot: &Boot,
    notes: &mut Notes,
) {
    let shares = mounts::resolve(spec.mounts.as_deref(), &project.root).unwrap_or_default();
    if !shares.is_empty() {
        let list: Vec<String> = shares
            .iter()
            .map(|m| m.host.display().to_string())
            .collect();
        notes.add(format!(
            "{who}mounts: host folders ({}) are not shared with a cluster's machines: copy files in with `virtctl scp`, or keep them in a PersistentVolumeClaim",
            list.join(", ")
        ));
    }
    if let Boot::Kernel { .. } = boot {
        notes.add(format!(
            "{who}upgrade-kernel: the kernel comes from its image, not the disk: after a kernel upgrade, make a new kernel image (`hvbox box export --kernel-oci`) and change kernelBoot's image"
        ));
    }
    if !spec.provision.is_empty() {
        notes.add(format!(
            "{who}provision: the steps run over ssh after `hvbox up`; on a cluster run them through `virtctl ssh`, or move them into cloud_init"
        ));
    }
    if spec.nested_virtualization {
        notes.add(format!(
            "{who}nested_virtualization: a cluster node offers it only when its KubeVirt allows (cpu model host-passthrough); the objects do not ask for it"
        ));
    }
    for p in spec.forwards().iter().filter(|p| !p.address.is_loopback()) {
        notes.add(format!(
            "{who}ports: {}:{} is open beyond this host locally; the Service is reachable inside the cluster only: make it a LoadBalancer or NodePort to open it wider",
            p.address, p.host.0
        ));
    }
}

/// Messages about what does not carry over, said once each after the objects.
#[derive(Default)]
struct Notes(Vec<String>);

impl Notes {
    fn add(&mut self, note: String) {
        if !self.0.contains(&note) {
            self.0.push(note);
        }
    }

    fn print(&self) {
        for note in &self.0 {
            eprintln!("hvbox: note: {note}");
        }
    }
}

/// All objects as one YAML stream.
fn yaml_stream(objects: &[Manifest]) -> Result<String> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&object.value).context("writing YAML")?);
    }
    Ok(out)
}

/// One file per object, `KIND-NAME.yaml`, for `kubectl apply -f DIR`. Every
/// file is made before any is written.
fn write_dir(dir: &Path, objects: &[Manifest]) -> Result<()> {
    let mut files = Vec::new();
    for object in objects {
        let text = yaml_stream(std::slice::from_ref(object))?;
        let file = format!("{}-{}.yaml", object.kind.to_lowercase(), object.name);
        files.push((dir.join(file), text));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (path, text) in files {
        let partial = path.with_extension("yaml.partial");
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, &path))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    crate::progress::step!("wrote {} objects into {}", objects.len(), dir.display());
    Ok(())
}

/// A box's images under --registry.
#[derive(Clone, PartialEq)]
struct Images {
    box_name: String,
    digest: String,
    disk: String,
    kernel: String,
}

struct Access {
    vm: String,
    machine: Machine,
    state: MachineState,
    ports: Vec<(u16, u16)>,
}

/// The pinned host key and the virtctl commands that use it, on stdout unless the
/// objects are there.
fn print_access(
    all: &[Access],
    push: &[Images],
    namespace: Option<&str>,
    to_stderr: bool,
) -> Result<()> {
    let mut text = String::new();
    for i in push {
        let file = images::repository(&i.box_name);
        // The digest's start names the box in the cache as `box list` shows it.
        let short = &i.digest[..i.digest.len().min(23)];
        text.push_str(&format!(
            "images of box {} (push them before `kubectl apply`):\n  hvbox box export {short} --oci {file}.tar --kernel-oci {file}-kernel.tar\n  skopeo copy oci-archive:{file}.tar docker://{}\n  skopeo copy oci-archive:{file}-kernel.tar docker://{}\n",
            i.box_name, i.disk, i.kernel
        ));
    }
    for a in all {
        let host_public = keys::public_of(
            &std::fs::read_to_string(a.machine.host_key())
                .with_context(|| format!("reading {}", a.machine.host_key().display()))?,
        )?;
        let line = ssh::known_hosts_line(&a.state, &host_public);
        let ns = namespace.map(|n| format!(" -n {n}")).unwrap_or_default();
        text.push_str(&format!(
            "{}:\n  known_hosts: {}  ssh: virtctl ssh{ns} --local-ssh -i {} -t {} -t '-o HostKeyAlias={}' {}@vm/{}\n",
            a.vm,
            line,
            // Pasted into a shell: paths with spaces or quotes stay one argument.
            shell_quote(&a.machine.ssh_key().to_string_lossy()),
            shell_quote(&format!(
                "-o UserKnownHostsFile={}",
                ssh::config_path(&a.machine.known_hosts())
            )),
            ssh::host_key_alias(&a.state),
            a.state.user,
            a.vm
        ));
        for (host, guest) in &a.ports {
            text.push_str(&format!(
                "  port {host}: virtctl port-forward{ns} vm/{} {host}:{guest}\n",
                a.vm
            ));
        }
    }
    if to_stderr {
        std::io::stderr().write_all(text.as_bytes())?;
    } else {
        std::io::stdout().write_all(text.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_named_default_among_several_does_not_take_the_projects_name() {
        assert_eq!(object_name("shop", DEFAULT_MACHINE, false), "shop");
        // With several, the headless Service is `shop`: the machine must not be.
        assert_eq!(object_name("shop", DEFAULT_MACHINE, true), "shop-default");
        assert_eq!(object_name("shop", "web", true), "shop-web");
    }
}
