//! The trace directory: made ready before the target runs, measured and handed to the sudo
//! caller when done.

use std::{fs, path::Path};

use trace_format::schema;

use super::{RecordError, RecordOptions};

/// Makes `options.output` an empty, writable directory; with `force`, removes the files of a
/// trace already in it (and only those).
pub(super) fn prepare(options: &RecordOptions) -> Result<(), RecordError> {
    let path = &options.output;
    let output_err = |source| RecordError::Output {
        path: path.clone(),
        source,
    };
    if path.exists() {
        let mut entries = fs::read_dir(path).map_err(output_err)?;
        if entries.next().is_some() {
            if !options.force {
                return Err(RecordError::OutputNotEmpty { path: path.clone() });
            }
            let _ = fs::remove_dir_all(path.join(schema::EVENTS_DIR));
            for file in schema::TRACE_FILES {
                let _ = fs::remove_file(path.join(file));
            }
        }
    }
    fs::create_dir_all(path).map_err(output_err)?;
    // Fail now, not after the target has run, if the directory is not writable.
    let probe = path.join(".alloctrace-write-test");
    fs::write(&probe, b"").map_err(output_err)?;
    let _ = fs::remove_file(probe);
    Ok(())
}

/// Bytes of the given files (relative to `dir`) on disk.
pub(super) fn bytes_on_disk(dir: &Path, files: &[String]) -> u64 {
    files
        .iter()
        .filter_map(|s| fs::metadata(dir.join(s)).ok())
        .map(|m| m.len())
        .sum()
}

/// Gives the trace directory and everything in it to the user who ran `sudo alloctrace`, so
/// they can read and delete it. Best effort: a file that cannot be changed stays as it is.
pub fn give_to(dir: &Path, uid: u32, gid: u32) {
    let uid = Some(nix::unistd::Uid::from_raw(uid));
    let gid = Some(nix::unistd::Gid::from_raw(gid));
    let mut pending = vec![dir.to_owned()];
    while let Some(path) = pending.pop() {
        let _ = nix::unistd::chown(&path, uid, gid);
        // symlink_metadata: never follow a link out of the trace directory.
        if fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir())
            && let Ok(entries) = fs::read_dir(&path)
        {
            pending.extend(entries.flatten().map(|e| e.path()));
        }
    }
}
