//! The free space of local disks, to name the one that filled up: "no space left on device"
//! from a write says neither which file nor which disk.

use std::path::Path;

/// One disk's free space, as the filesystem holding a path reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// The filesystem's id: paths on one disk share it.
    pub disk: u64,
    /// Bytes an unprivileged writer may still use.
    pub available: u64,
}

/// The free space of the disk that holds `path`, or would hold it: its nearest existing
/// folder is asked. None where the system does not say.
pub fn space_of(path: &Path) -> Option<DiskSpace> {
    let existing = path.ancestors().find(|p| p.exists())?;
    let stats = rustix::fs::statvfs(existing).ok()?;
    Some(DiskSpace {
        disk: stats.f_fsid,
        available: stats.f_bavail.saturating_mul(stats.f_frsize),
    })
}
