//! A real passt for tests: started in the foreground on a socket in a folder, with
//! any extra arguments (port forwards), waited for until it listens, killed on drop.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Passt {
    child: Child,
    pub socket: PathBuf,
}

impl Passt {
    /// passt on a socket in `dir`, or `None` (with the reason printed) without passt.
    pub fn start(dir: &Path) -> Option<Passt> {
        Passt::start_with(dir, "passt", &[])
    }

    /// passt with `args` on `dir/NAME/passt.sock`.
    pub fn start_with(dir: &Path, name: &str, args: &[&str]) -> Option<Passt> {
        // passt drops root privileges to nobody, who must be able to create the socket.
        let sockets = dir.join(name);
        std::fs::create_dir(&sockets).unwrap();
        std::fs::set_permissions(&sockets, std::fs::Permissions::from_mode(0o777)).unwrap();
        let socket = sockets.join("passt.sock");
        let child = match Command::new("passt")
            .arg("--foreground")
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => child,
            Err(e) => {
                crate::skip(format!("cannot run passt ({e}); install the passt package"));
                return None;
            }
        };
        let mut passt = Passt { child, socket };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !listening(&passt.socket) {
            if let Ok(Some(status)) = passt.child.try_wait() {
                panic!("passt exited with {status} before creating its socket");
            }
            assert!(Instant::now() < deadline, "passt never created its socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(passt)
    }

    /// Its process id (passt stays in the foreground, as hvbox runs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Passt {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a UNIX stream socket at `path` listens (bind comes before listen, so the
/// file alone is not enough to connect).
pub fn listening(path: &Path) -> bool {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    let path = path.to_string_lossy();
    table.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() >= 8
            && fields[7] == path
            && u32::from_str_radix(fields[3], 16).is_ok_and(|flags| flags & 0x10000 != 0)
    })
}
