//! The process's own memory on `/metrics`: `process_resident_memory_bytes` (what the kernel
//! holds in RAM for the process now) and `process_resident_memory_peak_bytes` (the most it ever
//! held), read from `/proc/self/status` each time `/metrics` is rendered.
//!
//! Every stage serves its metrics through this crate, so the figures are there for all of them
//! without each stage remembering to record them. They are read at scrape time rather than by a
//! timer: a value is then never older than the scrape that shows it, and nothing runs between
//! scrapes. The first name is the one Prometheus' own client libraries use, so existing
//! dashboards and alerts find it.
//!
//! Read from `/proc` directly (two lines of text) rather than through a crate: it is Linux
//! only, which is where the stages run (containers); elsewhere the gauges are simply absent.

use std::path::Path;

/// Resident memory now, in bytes (`VmRSS`).
pub const RESIDENT: &str = "process_resident_memory_bytes";
/// Highest resident memory since the process started, in bytes (`VmHWM`, the high-water mark).
pub const RESIDENT_PEAK: &str = "process_resident_memory_peak_bytes";

/// Resident memory of a process as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResidentMemory {
    /// Bytes held in RAM now.
    pub current: u64,
    /// The most bytes held in RAM at any time so far.
    pub peak: u64,
}

impl ResidentMemory {
    /// This process's memory; `None` where `/proc/self/status` cannot be read (not Linux).
    pub fn of_this_process() -> Option<Self> {
        Self::from_status_file(Path::new("/proc/self/status"))
    }

    /// The memory of process `pid` (benchmarks watch child processes this way).
    pub fn of_process(pid: u32) -> Option<Self> {
        Self::from_status_file(&Path::new("/proc").join(pid.to_string()).join("status"))
    }

    fn from_status_file(path: &Path) -> Option<Self> {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| Self::parse_status(&text))
    }

    /// Reads `VmRSS` and `VmHWM` out of a `/proc/<pid>/status` text (values in kB).
    pub fn parse_status(status: &str) -> Option<Self> {
        let kilobytes = |field: &str| {
            status.lines().find_map(|line| {
                let rest = line.strip_prefix(field)?.strip_prefix(':')?;
                let number = rest.trim().strip_suffix("kB")?.trim();
                number.parse::<u64>().ok()
            })
        };
        let current = kilobytes("VmRSS")? * 1024;
        // VmHWM is missing only on unusual kernels; the current value is then the best bound.
        let peak = kilobytes("VmHWM").map_or(current, |peak| (peak * 1024).max(current));
        Some(Self { current, peak })
    }
}

/// Registers the help texts (once per process, with the recorder).
pub(crate) fn describe() {
    metrics::describe_gauge!(
        RESIDENT,
        metrics::Unit::Bytes,
        "Resident memory of the process (VmRSS), read when /metrics is rendered."
    );
    metrics::describe_gauge!(
        RESIDENT_PEAK,
        metrics::Unit::Bytes,
        "Highest resident memory of the process since it started (VmHWM)."
    );
}

/// Sets the gauges to the process's memory now; leaves them alone where it cannot be read.
pub(crate) fn record() {
    if let Some(memory) = ResidentMemory::of_this_process() {
        metrics::gauge!(RESIDENT).set(memory.current as f64);
        metrics::gauge!(RESIDENT_PEAK).set(memory.peak as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_and_peak_memory_are_read_from_a_status_text_in_bytes() {
        let status = "Name:\tnowstream-sink\nVmPeak:\t  300000 kB\nVmHWM:\t   51200 kB\n\
                      VmRSS:\t   40960 kB\nThreads:\t8\n";
        assert_eq!(
            ResidentMemory::parse_status(status),
            Some(ResidentMemory {
                current: 40_960 * 1024,
                peak: 51_200 * 1024
            })
        );
    }

    #[test]
    fn a_status_without_a_resident_size_gives_nothing() {
        assert_eq!(
            ResidentMemory::parse_status("Name:\tx\nVmHWM:\t1 kB\n"),
            None
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_holds_some_memory() {
        let memory = ResidentMemory::of_this_process().unwrap();
        assert!(
            memory.current > 0 && memory.peak >= memory.current,
            "{memory:?}"
        );
    }
}
