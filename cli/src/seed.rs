//! The machine's cloud-init seed, made from the spec, the machine's identity and its
//! keys; rewritten when the spec's first-boot settings change. The spec's side of it
//! (and its check, which `up` ran before) is [`crate::spec::first_boot`].

use crate::keys;
use crate::machine::{Machine, MachineState};
use crate::project::Project;
use crate::spec::first_boot::{self, Identity};
use crate::spec::mounts;
use crate::spec::Spec;
use anyhow::{Context, Result};
use hvbox_cloud_init::{HostKey, SeedConfig};

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
    let identity = Identity {
        instance_id: state.instance_id.clone(),
        hostname: state.hostname.clone(),
        user: state.user.clone(),
        authorized_keys: vec![login_public.trim().to_string()],
        host_key: HostKey {
            private_openssh: host_private,
            public_openssh: host_public,
        },
        mac: state.mac.to_string(),
    };
    let user_data = first_boot::user_data(&spec.cloud_init, &project.root).with_context(|| {
        format!(
            "the user-data of {} (run `hvbox validate`)",
            project.spec_path.display()
        )
    })?;
    // A missing host folder was reported by the spec check before anything ran.
    let mounts = mounts::resolve(spec.mounts.as_deref(), &project.root).unwrap_or_default();
    Ok(first_boot::seed_config(spec, identity, user_data, &mounts))
}

/// Write the seed when its bytes would change; true when it did. The instance-id
/// stays, so cloud-init applies per-boot settings again but not first-boot ones.
pub fn refresh(project: &Project, spec: &Spec, machine: &Machine) -> Result<bool> {
    let state = machine.load_state()?;
    let config = with_host_proxy(seed_config(project, spec, machine, &state)?);
    hvbox_cloud_init::write_seed(&config, &machine.seed()).context("writing the cloud-init seed")
}

/// The first seed of a new machine.
pub fn write_new(
    project: &Project,
    spec: &Spec,
    machine: &Machine,
    state: &MachineState,
) -> Result<()> {
    let config = with_host_proxy(seed_config(project, spec, machine, state)?);
    hvbox_cloud_init::write_seed(&config, &machine.seed())
        .map(drop)
        .context("writing the cloud-init seed")
}

/// A machine on this host gets this host's proxies (see [`crate::host_proxy`]);
/// the seed of an export elsewhere does not.
fn with_host_proxy(config: SeedConfig) -> SeedConfig {
    SeedConfig {
        proxy: crate::host_proxy::for_guests().clone(),
        ..config
    }
}

fn read(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}
