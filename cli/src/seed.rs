//! The machine's cloud-init seed, made from the spec, the machine's identity and its
//! keys; rewritten when the spec's first-boot settings change.

use crate::keys;
use crate::machine::{Machine, MachineState};
use crate::project::Project;
use crate::spec::{line_of_key, Spec};
use anyhow::{bail, Context, Result};
use hvbox_cloud_init::{HostKey, NetworkSettings, SeedConfig, UserData, WriteFile};

/// The seed for `machine` as the spec describes it now.
pub fn seed_config(
    project: &Project,
    spec: &Spec,
    machine: &Machine,
    state: &MachineState,
) -> Result<SeedConfig> {
    let login_public = read(&machine.file("id_ed25519.pub"))?;
    let host_private = read(&machine.host_key())?;
    let host_public = keys::public_of(&host_private)?;
    let ci = &spec.cloud_init;
    let net = &spec.network;
    Ok(SeedConfig {
        instance_id: state.instance_id.clone(),
        hostname: state.hostname.clone(),
        user: state.user.clone(),
        authorized_keys: vec![login_public.trim().to_string()],
        host_key: HostKey {
            private_openssh: host_private,
            public_openssh: host_public,
        },
        mac: state.mac.to_string(),
        user_groups: spec.ssh.groups.clone(),
        network: NetworkSettings {
            dhcp4: net.dhcp4,
            dhcp6: net.dhcp6,
            addresses: net.addresses.iter().map(|a| a.0.clone()).collect(),
            gateway4: net.gateway4.map(|g| g.to_string()),
            gateway6: net.gateway6.map(|g| g.to_string()),
            nameservers: net.nameservers.iter().map(|n| n.to_string()).collect(),
        },
        timezone: ci.timezone.clone(),
        packages: ci.packages.clone(),
        write_files: ci
            .write_files
            .iter()
            .map(|f| WriteFile {
                path: f.path.clone(),
                content: f.content.clone(),
                permissions: f.permissions.clone(),
                owner: f.owner.clone(),
                append: f.append,
                // Files owned by a user must wait until cloud-init created it.
                defer: f.owner.is_some(),
            })
            .collect(),
        runcmd: ci.runcmd.clone(),
        user_data: user_data(project, spec)?,
    })
}

/// The user's own cloud-config, inline in the spec or from a file.
fn user_data(project: &Project, spec: &Spec) -> Result<Option<UserData>> {
    let ci = &spec.cloud_init;
    match (&ci.user_data, &ci.user_data_file) {
        (Some(_), Some(_)) => bail!(
            "{}: cloud_init has both user_data and user_data_file; keep one",
            project.spec_path.display()
        ),
        (Some(text), None) => UserData::parse(text, INLINE)
            .map(Some)
            .map_err(|e| seed_error(project, e)),
        (None, Some(path)) => {
            let path = project.root.join(path);
            let text = std::fs::read_to_string(&path).with_context(|| {
                format!(
                    "cloud_init.user_data_file in {}: cannot read {}",
                    project.spec_path.display(),
                    path.display()
                )
            })?;
            Ok(Some(UserData::parse(&text, &path.display().to_string())?))
        }
        (None, None) => Ok(None),
    }
}

/// Write the seed when its bytes would change; true when it did. The instance-id
/// stays, so cloud-init applies per-boot settings again but not first-boot ones.
pub fn refresh(project: &Project, spec: &Spec, machine: &Machine) -> Result<bool> {
    let state = machine.load_state()?;
    let config = seed_config(project, spec, machine, &state)?;
    hvbox_cloud_init::write_seed(&config, &machine.seed()).map_err(|e| seed_error(project, e))
}

/// The first seed of a new machine.
pub fn write_new(
    project: &Project,
    spec: &Spec,
    machine: &Machine,
    state: &MachineState,
) -> Result<()> {
    let config = seed_config(project, spec, machine, state)?;
    hvbox_cloud_init::write_seed(&config, &machine.seed())
        .map(drop)
        .map_err(|e| seed_error(project, e))
}

/// How the inline user-data is named until its errors are located in the spec.
const INLINE: &str = "cloud_init.user_data";

/// Errors in the inline user-data are located in the spec itself (its lines count
/// from the line after `user_data: |`); the others name their file.
fn seed_error(project: &Project, e: hvbox_cloud_init::Error) -> anyhow::Error {
    match e {
        hvbox_cloud_init::Error::UserData {
            origin,
            line,
            column,
            message,
        } if origin == INLINE => {
            let spec_text = std::fs::read_to_string(&project.spec_path).unwrap_or_default();
            let key_line = line_of_key(&spec_text, "cloud_init", "user_data").unwrap_or(0);
            let at = match column {
                Some(c) => format!("{}:{c}", key_line + line),
                None => format!("{}", key_line + line),
            };
            anyhow::anyhow!("{}:{at}: {INLINE}: {message}", project.spec_path.display())
        }
        hvbox_cloud_init::Error::InvalidConfig(msg) => anyhow::anyhow!(
            "{}: the first-boot settings cannot be used: {msg}",
            project.spec_path.display()
        ),
        other => anyhow::Error::new(other).context("writing the cloud-init seed"),
    }
}

fn read(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}
