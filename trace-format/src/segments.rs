//! Which event segments a trace directory holds.
//!
//! A segment is written as `part-NNNNNN.parquet.tmp` and renamed when closed, so the finished
//! ones are exactly the `part-*.parquet` files; the open one of a running or killed recording is
//! skipped.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use crate::schema::EVENTS_DIR;

/// The finished segments of the trace in `trace_dir`, in write order. A trace without an
/// `events/` folder has none.
pub fn list(trace_dir: &Path) -> io::Result<Vec<PathBuf>> {
    let events = trace_dir.join(EVENTS_DIR);
    let entries = match fs::read_dir(&events) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry?;
        if is_segment_name(&entry.file_name().to_string_lossy()) {
            paths.push(entry.path());
        }
    }
    // Zero-padded indices: name order is write order.
    paths.sort();
    Ok(paths)
}

fn is_segment_name(name: &str) -> bool {
    name.starts_with("part-") && name.ends_with(".parquet")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::segment_file_name;

    /// Check that finished segments are listed in order and open (`.tmp`) ones are not.
    #[test]
    fn lists_finished_segments_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let events = dir.path().join(EVENTS_DIR);
        fs::create_dir(&events).expect("mkdir");
        for name in [
            segment_file_name(2),
            segment_file_name(0),
            format!("{}.tmp", segment_file_name(3)),
            "notes.txt".to_owned(),
            segment_file_name(1),
        ] {
            fs::write(events.join(name), b"").expect("write");
        }
        let names: Vec<String> = list(dir.path())
            .expect("list")
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        assert_eq!(
            names,
            [0, 1, 2].map(segment_file_name).to_vec(),
            "finished segments in index order"
        );
    }

    /// Check that a trace without an events folder has no segments rather than an error.
    #[test]
    fn no_events_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(list(dir.path()).expect("list").is_empty());
    }
}
