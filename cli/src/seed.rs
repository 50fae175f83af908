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
    let config = with_recorded_proxy(seed_config(project, spec, machine, &state)?, &state);
    hvbox_cloud_init::write_seed(&config, &machine.seed()).context("writing the cloud-init seed")
}

/// The first seed of a new machine.
pub fn write_new(
    project: &Project,
    spec: &Spec,
    machine: &Machine,
    state: &MachineState,
) -> Result<()> {
    let config = with_recorded_proxy(seed_config(project, spec, machine, state)?, state);
    hvbox_cloud_init::write_seed(&config, &machine.seed())
        .map(drop)
        .context("writing the cloud-init seed")
}

/// A machine made on this host has the proxies recorded in its state when it was
/// made (see [`crate::host_proxy`]), not the current shell's; the seed of an export
/// elsewhere has none.
fn with_recorded_proxy(config: SeedConfig, state: &MachineState) -> SeedConfig {
    SeedConfig {
        proxy: state.proxy.clone(),
        ..config
    }
}

fn read(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hvbox_cloud_init::GuestProxy;

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }

    /// The proxies apply at first boot only, so an existing machine's seed keeps
    /// the ones it was made with: `up` from a shell with other proxy variables
    /// (this test's own, whatever they are) finds no first-boot setting changed.
    #[test]
    fn the_seed_keeps_the_proxies_the_machine_was_made_with() {
        let dir = tempfile::tempdir().unwrap();
        let project = Project::of_spec(dir.path().join("hvbox.yaml"));
        let spec = Spec::parse("box: debian-12\n", &project.spec_path).unwrap();
        let machine = Machine::new("default", dir.path().join("machine"));
        std::fs::create_dir_all(dir.path().join("machine")).unwrap();
        let recorded = "http://recorded.proxy.example:3128";
        let mut state = MachineState {
            instance_id: "i-1".into(),
            mac: "52:54:00:00:00:01".parse().unwrap(),
            hostname: "h".into(),
            user: "dev".into(),
            box_name: "debian-12".into(),
            box_disk_digest: "sha256:00".into(),
            created_unix: 0,
            kernels: Vec::new(),
            pinned_kernel: None,
            provisioned_unix: None,
            proxy: GuestProxy {
                http: Some(recorded.into()),
                ..Default::default()
            },
        };
        crate::identity::write_keys(&machine, &state).unwrap();
        state.save(&machine.state_path()).unwrap();
        write_new(&project, &spec, &machine, &state).unwrap();
        let seed = std::fs::read(machine.seed()).unwrap();
        assert!(contains(&seed, recorded));
        assert!(
            !refresh(&project, &spec, &machine).unwrap(),
            "seed rewritten"
        );
        assert_eq!(std::fs::read(machine.seed()).unwrap(), seed);

        // A machine made before proxies were recorded had none (serde's default):
        // its seed is rewritten once without them, then stays.
        state.proxy = GuestProxy::default();
        state.save(&machine.state_path()).unwrap();
        let text = std::fs::read_to_string(machine.state_path()).unwrap();
        assert!(!text.contains("proxy"), "{text}");
        assert!(refresh(&project, &spec, &machine).unwrap());
        assert!(!contains(&std::fs::read(machine.seed()).unwrap(), recorded));
        assert!(!refresh(&project, &spec, &machine).unwrap());
    }
}
