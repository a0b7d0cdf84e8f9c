//! glibc malloc settings a stage applies to itself before it starts any thread.
//!
//! glibc's defaults suit short programs, not a long-running stage that allocates from many
//! threads (tokio workers, librdkafka's) and frees megabyte buffers all day. Two of them keep
//! freed memory resident, measured in docs/performance.md:
//!
//! - **Arenas**: up to eight per core, one per thread that met contention; each keeps the pages
//!   its thread freed. Two arenas take 5–8 MB off every stage.
//! - **The dynamic mmap threshold**: a block of 128 KiB or more is mmapped and returned to the
//!   kernel when freed, but freeing one raises the threshold to its size (up to 32 MiB), so
//!   later page-sized buffers come from the arenas, whose freed space stays resident. A fixed
//!   threshold keeps them mmapped. The fetcher's large buffers are ServiceNow response bodies
//!   and producer requests, a few per second: its peak on a sliced backfill falls from about 45
//!   to 35 MB. The normalizer and the sink allocate a fetch response every few milliseconds;
//!   mapping each one cost the normalizer rate in the runs measured, so they keep the dynamic
//!   threshold.
//!
//! The settings are made here, in the binaries, rather than only in the container image's
//! environment, so that `cargo run`, the demo and every deployment behave the same. The
//! environment still wins: a setting given there (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`
//! or the same tunable in `GLIBC_TUNABLES`) is left as glibc read it.

/// The settings a process asks glibc for; `None` leaves glibc's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MallocSettings {
    /// `M_ARENA_MAX`: the most malloc arenas.
    pub arena_max: Option<u32>,
    /// `M_MMAP_THRESHOLD`, in bytes: blocks at least this large are mmapped; setting it also
    /// turns off glibc's dynamic adjustment of it.
    pub mmap_threshold: Option<u32>,
}

impl MallocSettings {
    /// The normalizer, the sink and the demo: two arenas.
    pub const STAGE: Self = Self {
        arena_max: Some(2),
        mmap_threshold: None,
    };

    /// The fetcher: two arenas and a fixed 128 KiB mmap threshold (glibc's starting value).
    pub const FETCHER: Self = Self {
        arena_max: Some(2),
        mmap_threshold: Some(128 * 1024),
    };

    /// These settings less those the environment already makes (`variable` reads it).
    pub fn left_to_environment(self, variable: impl Fn(&str) -> Option<String>) -> Self {
        let tunables = variable("GLIBC_TUNABLES").unwrap_or_default();
        let given = |name: &str, tunable: &str| {
            variable(name).is_some()
                || tunables
                    .split(':')
                    .any(|setting| setting.split('=').next() == Some(tunable))
        };
        Self {
            arena_max: self
                .arena_max
                .filter(|_| !given("MALLOC_ARENA_MAX", "glibc.malloc.arena_max")),
            mmap_threshold: self
                .mmap_threshold
                .filter(|_| !given("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold")),
        }
    }
}

/// Applies `settings`, except those the process environment gives; call it first in `main`,
/// before the async runtime starts its threads (arenas are created as threads contend). Returns
/// what was applied. Elsewhere than on glibc it does nothing.
pub fn apply(settings: MallocSettings) -> MallocSettings {
    let settings = settings.left_to_environment(|name| std::env::var(name).ok());
    set(settings)
}

/// A stage's `main`: applies `settings` while the process has one thread, then runs `main` to
/// its end on the multi-threaded tokio runtime `#[tokio::main]` would build.
pub fn run<F: std::future::Future>(
    settings: MallocSettings,
    main: F,
) -> std::io::Result<F::Output> {
    apply(settings);
    Ok(tokio::runtime::Runtime::new()?.block_on(main))
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set(settings: MallocSettings) -> MallocSettings {
    let mallopt = |parameter, value: Option<u32>| {
        value.filter(|&value| {
            let Ok(value) = libc::c_int::try_from(value) else {
                return false;
            };
            // SAFETY: mallopt only changes glibc's own malloc parameters; it takes plain integers,
            // touches no memory of ours and reports an unknown parameter or value by returning 0.
            #[allow(unsafe_code)]
            let accepted = unsafe { libc::mallopt(parameter, value) };
            accepted == 1
        })
    };
    MallocSettings {
        arena_max: mallopt(libc::M_ARENA_MAX, settings.arena_max),
        mmap_threshold: mallopt(libc::M_MMAP_THRESHOLD, settings.mmap_threshold),
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set(_settings: MallocSettings) -> MallocSettings {
    MallocSettings {
        arena_max: None,
        mmap_threshold: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn environment(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(given, _)| given == name)
                .map(|(_, value)| value.clone())
        }
    }

    #[test]
    fn without_any_malloc_variable_every_setting_is_applied() {
        let left = MallocSettings::FETCHER.left_to_environment(environment(&[("HOME", "/")]));
        assert_eq!(left, MallocSettings::FETCHER);
    }

    #[test]
    fn a_variable_in_the_environment_keeps_its_setting_and_only_that_one() {
        let left =
            MallocSettings::FETCHER.left_to_environment(environment(&[("MALLOC_ARENA_MAX", "4")]));
        assert_eq!(left.arena_max, None);
        assert_eq!(left.mmap_threshold, Some(128 * 1024));

        let left = MallocSettings::FETCHER
            .left_to_environment(environment(&[("MALLOC_MMAP_THRESHOLD_", "65536")]));
        assert_eq!(left.arena_max, Some(2));
        assert_eq!(left.mmap_threshold, None);
    }

    #[test]
    fn a_tunable_in_glibc_tunables_keeps_its_setting_but_a_longer_name_does_not() {
        let left = MallocSettings::FETCHER.left_to_environment(environment(&[(
            "GLIBC_TUNABLES",
            "glibc.malloc.tcache_count=0:glibc.malloc.mmap_threshold=65536",
        )]));
        assert_eq!(left.arena_max, Some(2));
        assert_eq!(left.mmap_threshold, None);

        let left = MallocSettings::STAGE.left_to_environment(environment(&[(
            "GLIBC_TUNABLES",
            "glibc.malloc.arena_max_extra=1",
        )]));
        assert_eq!(left, MallocSettings::STAGE);
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_accepts_both_settings_of_the_fetcher() {
        assert_eq!(set(MallocSettings::FETCHER), MallocSettings::FETCHER);
    }
}
