//! What makes a machine itself, fixed when it is made: its state (instance id, MAC,
//! hostname, user, box) and its keys (login key, pinned host key). `up` makes them
//! for a new machine; `export kubevirt` for a machine that exists only on a cluster.

use crate::keys;
use crate::machine::{kernels, state, Machine, MachineState};
use crate::project::Project;
use crate::spec::{first_boot, Spec};
use crate::ssh;
use anyhow::Result;
use hvbox_boxes::BoxArtifacts;

/// A new machine's state, from the spec and the box it is made of.
pub fn new_state(project: &Project, spec: &Spec, artifacts: &BoxArtifacts) -> Result<MachineState> {
    let hostname = spec
        .hostname
        .as_ref()
        .map(|h| h.0.clone())
        .unwrap_or_else(|| project.default_hostname());
    let user = spec
        .ssh
        .user
        .as_ref()
        .map(|u| u.0.clone())
        .unwrap_or_else(|| first_boot::DEFAULT_USER.to_string());
    Ok(MachineState {
        instance_id: state::new_instance_id()?,
        mac: state::new_mac()?,
        hostname,
        user,
        box_name: artifacts.name.clone(),
        box_disk_digest: artifacts.disk.digest.to_string(),
        created_unix: kernels::now_unix(),
        kernels: Vec::new(),
        pinned_kernel: None,
        provisioned_unix: None,
        proxy: Default::default(),
    })
}

/// Generate the machine's login key and host key into its folder, and the
/// known_hosts line that pins the host key.
pub fn write_keys(machine: &Machine, state: &MachineState) -> Result<()> {
    let login = keys::generate_ed25519(&format!("hvbox@{}", state.hostname))?;
    keys::write_private(&machine.ssh_key(), &login.private_openssh)?;
    std::fs::write(machine.file("id_ed25519.pub"), &login.public_openssh)?;
    let host_key = keys::generate_ed25519(&format!("root@{}", state.hostname))?;
    keys::write_private(&machine.host_key(), &host_key.private_openssh)?;
    std::fs::write(
        machine.known_hosts(),
        ssh::known_hosts_line(state, &host_key.public_openssh),
    )?;
    Ok(())
}
