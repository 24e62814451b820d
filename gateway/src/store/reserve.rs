//! The reserve file: room kept in the storage folder for when the disk fills anyway,
//! preallocated (not sparse), never holding data. `space.rs` decides when it goes and when it
//! comes back; this module only makes and removes it.

use std::path::Path;

/// The reserve file's name in the storage folder.
pub const RESERVE_FILE: &str = "reserve.bin";

/// Writes `len` bytes of allocated (not sparse) space at `path`, through a temporary file
/// renamed into place so that a half-made reserve is never taken for a whole one.
pub(super) fn preallocate(dir: &Path, path: &Path, len: u64) -> std::io::Result<()> {
    use fs2::FileExt as _;
    std::fs::create_dir_all(dir)?;
    let partial = path.with_extension("partial");
    let made = std::fs::File::create(&partial).and_then(|file| {
        file.allocate(len)?;
        file.sync_all()
    });
    match made {
        Ok(()) => std::fs::rename(&partial, path),
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e)
        }
    }
}

/// Removes the reserve file; a missing one is not an error.
pub(super) fn remove(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
