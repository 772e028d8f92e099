//! `/proc/PID/maps`: the files a process has mapped, to find its allocators after exec.

use std::{fs, io, path::PathBuf};

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub offset: u64,
    /// `major:minor` of the file's device.
    pub dev: String,
    pub inode: u64,
    /// File path, `[heap]`-style pseudo names, or empty for anonymous memory. A trailing
    /// " (deleted)" is kept.
    pub path: String,
}

impl Mapping {
    pub fn is_executable(&self) -> bool {
        self.perms.as_bytes().get(2) == Some(&b'x')
    }

    /// Whether this maps a regular file (not anonymous memory or a `[pseudo]` region).
    pub fn is_file(&self) -> bool {
        self.inode != 0 && self.path.starts_with('/')
    }

    /// A path that opens exactly the mapped file, even if it was deleted or replaced on disk:
    /// the file path when it still refers to the same inode, else `/proc/PID/map_files/...`.
    pub fn open_path(&self, pid: u32) -> PathBuf {
        use std::os::unix::fs::MetadataExt as _;
        let path = PathBuf::from(&self.path);
        match fs::metadata(&path) {
            Ok(meta) if meta.ino() == self.inode => path,
            _ => PathBuf::from(format!(
                "/proc/{pid}/map_files/{:x}-{:x}",
                self.start, self.end
            )),
        }
    }
}

/// Parses the text of a maps file; lines that do not parse are skipped.
pub fn parse(text: &str) -> Vec<Mapping> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mapping> {
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let perms = fields.next()?.to_owned();
    let offset = u64::from_str_radix(fields.next()?, 16).ok()?;
    let dev = fields.next()?.to_owned();
    let inode = fields.next()?.parse().ok()?;
    let path = fields.next().unwrap_or("").trim_start().to_owned();
    let (start, end) = range.split_once('-')?;
    Some(Mapping {
        start: u64::from_str_radix(start, 16).ok()?,
        end: u64::from_str_radix(end, 16).ok()?,
        perms,
        offset,
        dev,
        inode,
        path,
    })
}

/// Reads and parses `/proc/PID/maps`.
pub fn read(pid: u32) -> io::Result<Vec<Mapping>> {
    Ok(parse(&fs::read_to_string(format!("/proc/{pid}/maps"))?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check parsing of file, anonymous and pseudo mappings, including paths with spaces.
    #[test]
    fn parses_lines() {
        let text = "\
55d0c0a00000-55d0c0a21000 r-xp 00001000 fe:00 1234   /usr/bin/my prog
7f1e2c000000-7f1e2c021000 rw-p 00000000 00:00 0 
7ffd5b9fe000-7ffd5ba1f000 rw-p 00000000 00:00 0                          [stack]
";
        let maps = parse(text);
        assert_eq!(maps.len(), 3);
        assert_eq!(maps[0].path, "/usr/bin/my prog");
        assert!(maps[0].is_executable() && maps[0].is_file());
        assert_eq!(maps[0].offset, 0x1000);
        assert!(!maps[1].is_file() && maps[1].path.is_empty());
        assert_eq!(maps[2].path, "[stack]");
    }

    /// Check that our own maps list libc as an executable file mapping.
    #[test]
    fn reads_self() {
        let maps = read(std::process::id()).unwrap();
        assert!(
            maps.iter()
                .any(|m| m.is_executable() && m.path.contains("libc.so"))
        );
    }
}
