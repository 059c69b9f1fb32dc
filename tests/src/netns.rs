//! A test host of our own: a network namespace joined to this machine by a veth pair, so that
//! a node can be cut off from chosen addresses for real (a blackhole route inside it).
//!
//! Addresses: the machine's side of the link has `10.231.<n>.1` (general) and `10.231.<n>.5`
//! (for services the test may cut off); the namespace has `10.231.<n>.2`. Needs root.

use std::net::Ipv4Addr;
use std::process::Command;

/// A network namespace with a veth link to this machine; removed on drop.
pub struct TestHost {
    name: String,
    host_if: String,
    n: u8,
}

/// Deletes interfaces that hold an address of link `n`: leftovers of an interrupted run (a
/// namespace outlives `ip netns del` while sockets in it linger, and so does its veth pair).
fn remove_stale_links(n: u8) {
    let Ok(out) = Command::new("ip")
        .args(["-o", "addr", "show", "to", &format!("10.231.{n}.0/24")])
        .output()
    else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(name) = line.split_whitespace().nth(1) {
            let _ = Command::new("ip")
                .args(["link", "del", name.trim_end_matches(':')])
                .output();
        }
    }
}

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("running ip");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestHost {
    /// Creates namespace number `n` (distinct per concurrent test). Without root there is
    /// none: it says so on stderr, and the calling test returns early, skipped.
    pub fn create(n: u8) -> Option<Self> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "skipped: this test makes a network namespace (ip netns), which needs root; run `make test` as root"
            );
            return None;
        }
        let name = format!("fresco-t{}-{n}", std::process::id() % 100_000);
        let (host_if, ns_if) = (
            format!("fh{n}p{}", std::process::id() % 10_000),
            format!("fn{n}p{}", std::process::id() % 10_000),
        );
        // A leftover of an interrupted run would make `ip link add` fail or steal the addresses.
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        remove_stale_links(n);
        run(&["ip", "netns", "add", &name]);
        let host = Self {
            name: name.clone(),
            host_if: host_if.clone(),
            n,
        };
        run(&["ip", "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if]);
        run(&["ip", "link", "set", &ns_if, "netns", &name]);
        run(&["ip", "addr", "add", &format!("10.231.{n}.1/24"), "dev", &host_if]);
        run(&["ip", "addr", "add", &format!("10.231.{n}.5/24"), "dev", &host_if]);
        run(&["ip", "link", "set", &host_if, "up"]);
        let ns = |args: &[&str]| {
            let mut all = vec!["ip", "netns", "exec", &name];
            all.extend_from_slice(args);
            run(&all);
        };
        ns(&["ip", "addr", "add", &format!("10.231.{n}.2/24"), "dev", &ns_if]);
        ns(&["ip", "link", "set", &ns_if, "up"]);
        ns(&["ip", "link", "set", "lo", "up"]);
        Some(host)
    }

    /// This machine's general address on the link.
    pub fn machine_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.n, 1)
    }

    /// This machine's address for services that [`TestHost::cut_off_services`] cuts off.
    pub fn services_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.n, 5)
    }

    /// The namespace's address.
    pub fn ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 231, self.n, 2)
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Partitions the namespace from [`TestHost::services_ip`]: its packets there are dropped.
    pub fn cut_off_services(&self) {
        run(&[
            "ip",
            "netns",
            "exec",
            &self.name,
            "ip",
            "route",
            "add",
            "blackhole",
            &format!("{}/32", self.services_ip()),
        ]);
    }
}

impl TestHost {
    /// Kills (SIGKILL) every process running inside the namespace: an sshd, nodes a playbook
    /// started there.
    pub fn kill_processes(&self) {
        if let Ok(out) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).output();
            }
        }
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        self.kill_processes();
        // Deleting one end of a veth pair deletes both; the namespace itself may linger until
        // its last socket is gone, so the link is not left to it.
        let _ = Command::new("ip").args(["link", "del", &self.host_if]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}
