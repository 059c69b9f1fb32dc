//! A CPU quota for one process: a cgroup v1 group under `/sys/fs/cgroup/cpu/` with
//! `cpu.cfs_quota_us`, so that every edge of the scaling benchmark gets the same share of the
//! machine and two cores do not cap what N edges can do together.

use std::path::PathBuf;

/// A cgroup holding one process at a CPU quota; the process goes back to the root group and the
/// group is removed on drop.
pub struct CpuQuota {
    dir: PathBuf,
    pid: u32,
}

const ROOT: &str = "/sys/fs/cgroup/cpu";

impl CpuQuota {
    /// Puts process `pid` (all its threads) in group `name` limited to `cpus` CPUs.
    pub fn confine(name: &str, pid: u32, cpus: f64) -> std::io::Result<Self> {
        let dir = PathBuf::from(ROOT).join(name);
        if !dir.exists() {
            std::fs::create_dir(&dir).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "creating {} ({e}): the scaling benchmark needs root and cgroup v1's cpu controller",
                        dir.display()
                    ),
                )
            })?;
        }
        // A 10 ms period (the default is 100 ms): a throttled edge stalls for at most the rest of
        // one period, which keeps the quota's own latency cost small next to what is measured.
        let period = 10_000u64;
        std::fs::write(dir.join("cpu.cfs_period_us"), period.to_string())?;
        std::fs::write(
            dir.join("cpu.cfs_quota_us"),
            ((cpus * period as f64) as u64).to_string(),
        )?;
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        Ok(Self { dir, pid })
    }

    /// How many scheduler periods the group was throttled in so far: an edge that never reached
    /// its quota was not CPU-bound, and a ratio measured on it would not say how fresco scales.
    pub fn throttled_periods(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("cpu.stat"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("nr_throttled ").and_then(|v| v.trim().parse().ok()))
            })
            .unwrap_or(0)
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        let _ = std::fs::write(PathBuf::from(ROOT).join("cgroup.procs"), self.pid.to_string());
        let _ = std::fs::remove_dir(&self.dir);
    }
}
