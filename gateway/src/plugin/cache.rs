//! On-disk cache of compiled plugins, so a restart or a reload does not recompile them.
//!
//! This module owns the cache directory's file format and the one `unsafe` call of the plugin
//! host. A file is named `<sha256 of the wasm>-<engine key>.cwasm`, where the engine key hashes
//! [`wasmtime::Engine::precompile_compatibility_hash`]: a new wasmtime or different engine
//! settings miss the cache instead of loading incompatible code. Each file ends with the SHA-256
//! of the bytes before it, checked before wasmtime sees them, so a torn or corrupted file is
//! discarded and the plugin recompiled. Files are written to a temporary name and renamed, so a
//! reader never sees a partial file. A cache failure is never fatal: it costs a compilation.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

const CHECKSUM_LEN: usize = 32;

/// A directory of compiled plugins for one engine configuration.
#[derive(Debug)]
pub(crate) struct DiskCache {
    dir: PathBuf,
    engine_key: String,
}

impl DiskCache {
    /// Creates `dir` if needed.
    pub(crate) fn open(dir: PathBuf, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex::encode(&hasher.0.finalize()[..8]);
        Ok(Self { dir, engine_key })
    }

    /// The file a component with this wasm hash is cached in.
    /// Removes compiled files (and leftover temporary files) whose plugin is not in `keep` and
    /// that were not written in the last `grace`: what a removed or replaced plugin leaves
    /// behind, and what another wasmtime version or engine setting wrote. Returns how many.
    pub(crate) fn prune(
        &self,
        keep: &std::collections::HashSet<String>,
        grace: std::time::Duration,
    ) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let now = std::time::SystemTime::now();
        let mut removed = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let in_use = name
                .strip_suffix(&format!("-{}.cwasm", self.engine_key))
                .is_some_and(|hash| keep.contains(hash));
            let young = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_none_or(|age| age < grace);
            if in_use || young {
                continue;
            }
            if std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }

    pub(crate) fn path_for(&self, wasm_hash: &str) -> PathBuf {
        self.dir
            .join(format!("{wasm_hash}-{}.cwasm", self.engine_key))
    }

    /// Loads a cached compilation, or `None` when there is none or it is unusable (in which case
    /// the file is removed).
    pub(crate) fn load(&self, engine: &Engine, wasm_hash: &str) -> Option<Component> {
        let path = self.path_for(wasm_hash);
        let file = match std::fs::read(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read plugin cache file");
                return None;
            }
        };
        match verified(&file) {
            // SAFETY: `Component::deserialize` runs the bytes as native code without checking
            // them. These bytes are exactly what `store` wrote from `Component::serialize` of this
            // engine: the trailing SHA-256 matched, the name carries the engine's compatibility
            // key, and the cache directory is the gateway's own (operators must not give others
            // write access to it, as with the binary itself).
            Some(bytes) => match unsafe { Component::deserialize(engine, bytes) } {
                Ok(component) => return Some(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "plugin cache file refused by wasmtime; recompiling")
                }
            },
            None => {
                tracing::warn!(path = %path.display(), "plugin cache file is corrupt; recompiling")
            }
        }
        let _ = std::fs::remove_file(&path);
        None
    }

    /// Stores a compilation atomically. Failures are logged and otherwise ignored.
    pub(crate) fn store(&self, wasm_hash: &str, component: &Component) {
        if let Err(e) = self.try_store(wasm_hash, component) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write plugin cache file");
        }
    }

    fn try_store(&self, wasm_hash: &str, component: &Component) -> Result<(), String> {
        let mut bytes = component.serialize().map_err(|e| e.to_string())?;
        let checksum = Sha256::digest(&bytes);
        bytes.extend_from_slice(&checksum);
        let tmp = temp_path(&self.dir);
        let written = std::fs::write(&tmp, &bytes)
            .and_then(|()| std::fs::rename(&tmp, self.path_for(wasm_hash)));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(|e| e.to_string())
    }
}

/// The payload of a cache file whose trailing checksum matches, or `None`.
fn verified(file: &[u8]) -> Option<&[u8]> {
    let split = file.len().checked_sub(CHECKSUM_LEN)?;
    let (bytes, checksum) = file.split_at(split);
    (Sha256::digest(bytes).as_slice() == checksum).then_some(bytes)
}

/// A name no other writer (thread or process) uses at the same time.
fn temp_path(dir: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".tmp-{}-{n}", std::process::id()))
}

/// Feeds `Hash` input into SHA-256, which, unlike `DefaultHasher`, is stable across Rust
/// versions: the engine key must not change when only the compiler does.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().expect("digest is 32 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_plugins_in_use_and_young_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::default();
        let cache = DiskCache::open(dir.path().to_path_buf(), &engine).expect("open");
        for hash in ["used", "stale"] {
            std::fs::write(cache.path_for(hash), b"x").expect("write");
        }
        std::fs::write(dir.path().join("other-engine.cwasm"), b"x").expect("write");
        let keep = std::collections::HashSet::from(["used".to_owned()]);
        assert_eq!(
            cache.prune(&keep, std::time::Duration::from_secs(3600)),
            0,
            "all young"
        );
        assert_eq!(cache.prune(&keep, std::time::Duration::ZERO), 2);
        assert!(cache.path_for("used").exists());
        assert!(!cache.path_for("stale").exists());
    }

    #[test]
    fn checksum_guards_the_payload() {
        let mut file = b"compiled code".to_vec();
        file.extend_from_slice(&Sha256::digest(b"compiled code"));
        assert_eq!(verified(&file), Some(&b"compiled code"[..]));
        file[3] ^= 1;
        assert_eq!(verified(&file), None);
        assert_eq!(verified(b"short"), None);
    }
}
