//! What the machine is: memory use of this process (`/proc/self/status`), the filesystem a
//! directory lives on (`/proc/self/mounts`, so a tmpfs data dir is flagged), and core count.

use std::path::Path;

use serde::Serialize;

/// Resident set size of this process, KiB (`VmRSS`), where `/proc` has it.
pub fn rss_kib() -> Option<u64> {
    status_kib("VmRSS:")
}

/// Peak resident set size of this process, KiB (`VmHWM`), where `/proc` has it.
pub fn peak_rss_kib() -> Option<u64> {
    status_kib("VmHWM:")
}

/// CPU time this process has used so far (user + system, all threads), in microseconds,
/// from `/proc/self/stat` (clock ticks of 1/100 s, Linux's `USER_HZ`).
pub fn cpu_time_us() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_ticks(&stat).map(|ticks| ticks * 10_000)
}

/// CPU time the threads of this process named `name` have used so far (user + system), in
/// microseconds, from `/proc/self/task/*/stat`. Linux keeps a thread's first 15 bytes of
/// name, so `name` matches on those. `None` if no thread has that name (or `/proc` is not
/// there).
pub fn thread_cpu_time_us(name: &str) -> Option<u64> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let ticks: Vec<u64> = tasks
        .filter_map(Result::ok)
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| is_thread_named(comm.trim_end(), name))
        })
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .filter_map(|stat| parse_cpu_ticks(&stat))
        .collect();
    (!ticks.is_empty()).then(|| ticks.iter().sum::<u64>() * 10_000)
}

/// Whether a thread whose `/proc` name is `comm` was named `name` (which Linux truncates to
/// its first 15 bytes).
fn is_thread_named(comm: &str, name: &str) -> bool {
    let kept = name.len().min(15);
    name.is_char_boundary(kept) && comm == &name[..kept]
}

/// The whole machine's CPU time so far, from the first line of `/proc/stat`, in ticks:
/// `(busy, total)`, where idle and iowait count as not busy.
pub fn machine_cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_ticks(&stat)
}

/// `(busy, total)` ticks of the `cpu` line of a `/proc/stat` text.
fn parse_machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user]
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// The share of the machine's CPUs busy between two [`machine_cpu_ticks`] readings.
pub fn busy_share(start: (u64, u64), end: (u64, u64)) -> Option<f64> {
    let total = end.1.checked_sub(start.1)?;
    let busy = end.0.checked_sub(start.0)?;
    (total > 0).then(|| busy as f64 / total as f64)
}

/// `utime + stime` (fields 14 and 15) of a `/proc/<pid>/stat` line, in ticks.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_status_kib(&status, field)
}

/// The value of `field` (e.g. `VmRSS:`) in a `/proc/<pid>/status` text, in KiB.
fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(field))?;
    let mut words = line[field.len()..].split_whitespace();
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => Some(value),
        Some(_) => None,
    }
}

/// The machine and where the data goes.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// Cores available to this process.
    pub cpus: usize,
    /// The data directory, as given.
    pub data_dir: String,
    /// The filesystem holding it (`ext4`, `tmpfs`, …), if `/proc/self/mounts` says.
    pub data_dir_fs: Option<String>,
    /// The device or source of that filesystem.
    pub data_dir_device: Option<String>,
}

/// The CPUs this process may run on.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Machine {
    /// Describes this machine, with `data_dir` (which must exist) as the data directory.
    pub fn describe(data_dir: &Path) -> Machine {
        let mount = std::fs::canonicalize(data_dir)
            .ok()
            .and_then(|path| mount_of(&path));
        Machine {
            cpus: cpus(),
            data_dir: data_dir.display().to_string(),
            data_dir_fs: mount.as_ref().map(|mount| mount.fs_type.clone()),
            data_dir_device: mount.map(|mount| mount.source),
        }
    }

    /// Whether the data would sit in memory, making every fsync free (and the figures lies).
    pub fn data_in_memory(&self) -> bool {
        matches!(self.data_dir_fs.as_deref(), Some("tmpfs" | "ramfs"))
    }
}

/// One line of `/proc/self/mounts`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Mount {
    source: String,
    point: String,
    fs_type: String,
}

/// The mount holding `path` (absolute, canonical): the longest mount point that contains it.
fn mount_of(path: &Path) -> Option<Mount> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    longest_mount(&mounts, path)
}

fn longest_mount(mounts: &str, path: &Path) -> Option<Mount> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (source, point, fs_type) = (fields.next()?, fields.next()?, fields.next()?);
            Some(Mount {
                source: source.to_owned(),
                point: point.replace("\\040", " "),
                fs_type: fs_type.to_owned(),
            })
        })
        .filter(|mount| path.starts_with(&mount.point))
        .max_by_key(|mount| mount.point.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_are_read_in_kib() {
        let status = "Name:\tcairn-bench\nVmHWM:\t  51200 kB\nVmRSS:\t   40960 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(40_960));
        assert_eq!(parse_status_kib(status, "VmHWM:"), Some(51_200));
        assert_eq!(parse_status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn cpu_ticks_are_user_plus_system() {
        let stat = "1234 (cairn bench) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 3 0";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert!(cpu_time_us().is_some());
    }

    #[test]
    fn threads_are_told_apart_by_their_truncated_names() {
        assert!(is_thread_named("cairn-sqlite-wr", "cairn-sqlite-writer"));
        assert!(is_thread_named("tokio", "tokio"));
        assert!(!is_thread_named("cairn-sqlite-sy", "cairn-sqlite-writer"));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let spinning = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("bench-test-spin".into())
                .spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
                .expect("spawn")
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut seen = 0;
        while seen == 0 && std::time::Instant::now() < deadline {
            // `None` until the new thread has named itself.
            seen = thread_cpu_time_us("bench-test-spin").unwrap_or(0);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        spinning.join().expect("the thread ran");
        assert!(seen > 0, "the spinning thread's CPU time was seen");
        assert_eq!(thread_cpu_time_us("no-such-thread"), None);
    }

    #[test]
    fn machine_ticks_leave_out_idle_and_iowait() {
        let stat = "cpu  100 5 50 800 40 3 2 0 0 0\ncpu0 50 2 25 400 20 1 1 0 0 0\n";
        assert_eq!(parse_machine_ticks(stat), Some((160, 1000)));
        assert_eq!(busy_share((160, 1000), (360, 1400)), Some(0.5));
        assert!(machine_cpu_ticks().is_some());
    }

    #[test]
    fn the_longest_mount_point_wins() {
        let mounts = "/dev/vda / ext4 rw 0 0\ntmpfs /tmp tmpfs rw 0 0\n";
        let tmp = longest_mount(mounts, Path::new("/tmp/x")).expect("mount");
        assert_eq!(tmp.fs_type, "tmpfs");
        let work = longest_mount(mounts, Path::new("/work/main")).expect("mount");
        assert_eq!((work.point.as_str(), work.fs_type.as_str()), ("/", "ext4"));
    }
}
