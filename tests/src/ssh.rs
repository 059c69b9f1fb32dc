//! An sshd inside a [`TestHost`], reachable with a key made for the test: the hosts an ansible
//! playbook is run against.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::TestHost;

/// sshd running in a test host's namespace; stopped when dropped.
pub struct SshHost {
    sshd: Child,
    /// The private key that logs in as root.
    pub key: PathBuf,
    /// A known_hosts file holding the host's key.
    pub known_hosts: PathBuf,
}

fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen runs (openssh-client)");
    assert!(
        out.status.success(),
        "ssh-keygen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl SshHost {
    /// Starts sshd on port 22 of `host`'s address, with its files in `dir`.
    pub fn start(host: &TestHost, dir: &Path) -> Self {
        let (key, host_key) = (dir.join("id_ed25519"), dir.join("host_ed25519"));
        keygen(&key);
        keygen(&host_key);
        std::fs::copy(dir.join("id_ed25519.pub"), dir.join("authorized_keys")).unwrap();
        let host_pub = std::fs::read_to_string(dir.join("host_ed25519.pub")).unwrap();
        let known_hosts = dir.join("known_hosts");
        std::fs::write(&known_hosts, format!("{} {host_pub}", host.ip())).unwrap();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port 22\nListenAddress {ip}\nHostKey {hk}\nAuthorizedKeysFile {dir}/authorized_keys\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile {dir}/sshd.pid\n\
                 Subsystem sftp /usr/lib/openssh/sftp-server\n",
                ip = host.ip(),
                hk = host_key.display(),
                dir = dir.display(),
            ),
        )
        .unwrap();
        // sshd's privilege separation directory; Debian's init script makes it, we have none.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let sshd = Command::new("ip")
            .args(["netns", "exec", host.name(), "/usr/sbin/sshd", "-D", "-e", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("sshd starts (openssh-server)");
        let started = Instant::now();
        while std::net::TcpStream::connect((host.ip(), 22)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "sshd did not listen on {}:22",
                host.ip()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { sshd, key, known_hosts }
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
    }
}
