//! Bad input: one clear line on stderr, exit status 1, never a panic.

use std::{os::unix::fs::PermissionsExt as _, process::Command};

use super::common::{alloctrace, assert_clean_failure, assert_success, build, record, tempdir};

/// Check that running without privileges says to use sudo.
#[test]
fn not_root() {
    use std::os::unix::process::CommandExt as _;
    let dir = tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // Run a copy the unprivileged user can reach: the build tree may be under /root (0700),
    // as CI's default target directory is.
    let bin = dir.path().join("alloctrace");
    std::fs::copy(env!("CARGO_BIN_EXE_alloctrace"), &bin).unwrap();
    let out = Command::new(&bin)
        .args(["record", "-o"])
        .arg(dir.path().join("t"))
        .args(["--", "/bin/true"])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_clean_failure(&out, "needs root");
}

/// Check a command that does not exist.
#[test]
fn command_not_found() {
    let dir = tempdir();
    let out = record(&dir.path().join("t"), &[&"/nonexistent/prog"]);
    assert_clean_failure(&out, "command not found: /nonexistent/prog");
    let out = record(&dir.path().join("t"), &[&"no-such-command-anywhere"]);
    assert_clean_failure(&out, "command not found: no-such-command-anywhere");
}

/// Check an executable file that is not an ELF (nor a #! script).
#[test]
fn not_an_elf() {
    let dir = tempdir();
    let fake = dir.path().join("fake");
    std::fs::write(&fake, b"\x00\x01 definitely not ELF").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = record(&dir.path().join("t"), &[&fake]);
    assert_clean_failure(&out, "is not an ELF executable");
}

/// Check a pid that does not exist, and one that has already exited (a zombie: the state a
/// process is in when it exits during attach).
#[test]
fn pid_missing_or_gone() {
    let dir = tempdir();
    let out = alloctrace()
        .args(["record", "-o"])
        .arg(dir.path().join("t"))
        .args(["-p", "999999999"])
        .output()
        .unwrap();
    assert_clean_failure(&out, "no process with pid 999999999");

    let child = Command::new("/bin/true").spawn().unwrap();
    let pid = child.id();
    // Wait for it to exit without reaping it, so it stays a zombie.
    nix::sys::wait::waitid(
        nix::sys::wait::Id::Pid(nix::unistd::Pid::from_raw(pid as i32)),
        nix::sys::wait::WaitPidFlag::WEXITED | nix::sys::wait::WaitPidFlag::WNOWAIT,
    )
    .unwrap();
    let out = alloctrace()
        .args(["record", "-o"])
        .arg(dir.path().join("z"))
        .args(["-p", &pid.to_string()])
        .output()
        .unwrap();
    assert_clean_failure(&out, &format!("process {pid} has exited"));
    drop(child);
}

/// Check a static binary with no allocator at all, and a stripped static one whose allocator
/// symbols are gone.
#[test]
fn no_allocator_symbols() {
    let dir = tempdir();
    let src = dir.path().join("tiny.c");
    std::fs::write(
        &src,
        "void _start(void) { __asm__ volatile(\"mov $60, %eax\\n xor %edi, %edi\\n syscall\"); }\n",
    )
    .unwrap();
    let bin = dir.path().join("tiny");
    let status = Command::new("gcc")
        .args(["-static", "-nostdlib", "-O1", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .unwrap();
    assert!(status.success());
    let out = record(&dir.path().join("t1"), &[&bin]);
    assert_clean_failure(&out, "no allocator functions");

    let stripped = build("stop_here.c", "gcc", &["-static", "-s"]);
    let out = record(&dir.path().join("t2"), &[&stripped, &"1"]);
    assert_clean_failure(&out, "stripped");
}

/// Check output directories that are not empty or cannot be written.
#[test]
fn bad_output_directory() {
    let dir = tempdir();
    std::fs::write(dir.path().join("something"), b"x").unwrap();
    let out = alloctrace()
        .args(["record", "-o"])
        .arg(dir.path())
        .args(["--", "/bin/true"])
        .output()
        .unwrap();
    assert_clean_failure(&out, "is not empty");
    let out = alloctrace()
        .args(["record", "-o", "/proc/alloctrace-test/t", "--", "/bin/true"])
        .output()
        .unwrap();
    assert_clean_failure(&out, "cannot write to output directory");
}

/// Check that a uprobe placed by another tool on the same instruction with a different
/// `ref_ctr_offset` (what Debian's bcc memleak does) is reported as a conflict.
#[test]
fn probe_conflict_with_another_tool() {
    // A static binary keeps malloc in its own file, so the foreign probe touches nothing else.
    let bin = build("stop_here.c", "gcc", &["-static"]);
    let image = alloctrace::elf::ElfImage::open(&bin).unwrap();
    let malloc = alloctrace::probes::plan(&image)
        .into_iter()
        .find(|p| p.func == "malloc")
        .unwrap();
    let _foreign = foreign_uprobe_with_ref_ctr(&bin, malloc.file_offset);
    let dir = tempdir();
    let out = record(&dir.path().join("t"), &[&bin, &"1"]);
    assert_clean_failure(&out, "Another tool");
    assert!(String::from_utf8_lossy(&out.stderr).contains("ref_ctr_offset"));
}

/// Opens a uprobe perf event like bcc does for USDT semaphores: with a `ref_ctr_offset`, for
/// this test process only (which does not map `path`, so nothing is written anywhere).
fn foreign_uprobe_with_ref_ctr(path: &std::path::Path, offset: u64) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd as _;
    let pmu: u32 = std::fs::read_to_string("/sys/bus/event_source/devices/uprobe/type")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // struct perf_event_attr up to config2 (PERF_ATTR_SIZE_VER1 = 72 bytes); libc has no
    // binding for it.
    let mut attr = [0u8; 72];
    attr[0..4].copy_from_slice(&pmu.to_ne_bytes());
    attr[4..8].copy_from_slice(&72u32.to_ne_bytes());
    // config bits 32..63: ref_ctr_offset (/sys/bus/event_source/devices/uprobe/format).
    attr[8..16].copy_from_slice(&(0x1000u64 << 32).to_ne_bytes());
    attr[56..64].copy_from_slice(&(c_path.as_ptr() as u64).to_ne_bytes());
    attr[64..72].copy_from_slice(&offset.to_ne_bytes());
    // SAFETY: valid attr and a NUL-terminated path that outlives the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            std::process::id() as i32,
            -1,
            -1,
            0,
        )
    };
    assert!(
        fd >= 0,
        "perf_event_open: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a new descriptor owned by nobody else.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }
}

/// Check that a mistyped option before the command is a usage error with clap's suggestion
/// (status 2), not run as the command; options after the command still belong to it.
#[test]
fn mistyped_option_before_the_command() {
    let dir = tempdir();
    let out = alloctrace()
        .args(["record", "-o"])
        .arg(dir.path().join("t"))
        .args(["--no-stack", "/bin/true"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--no-stacks"), "no suggestion: {stderr}");
    assert!(!dir.path().join("t").exists(), "nothing recorded");
    // After the command name, arguments starting with `-` are the command's.
    let bin = build("churn.c", "gcc", &[]);
    let out = alloctrace()
        .args(["record", "-q", "--no-stacks", "-o"])
        .arg(dir.path().join("u"))
        .arg(&bin)
        .arg("-5")
        .output()
        .unwrap();
    assert_success(&out);
}

/// Check that a closed stdout (`alloctrace report t | head -1` after head exits) ends the
/// command quietly with status 0: the reader went away, nothing failed.
#[test]
fn broken_pipe_is_a_clean_exit() {
    let bin = build("churn.c", "gcc", &[]);
    let dir = tempdir();
    let out = record(dir.path(), &[&bin, &"1000"]);
    assert_success(&out);
    for args in [
        vec!["report"],
        vec!["export", "--format", "folded", "-o", "-"],
        vec!["symbolize"],
    ] {
        // A pipe whose read end is already closed: every write fails with EPIPE.
        let (reader, writer) = nix::unistd::pipe().unwrap();
        drop(reader);
        let out = alloctrace()
            .args(&args)
            .arg(dir.path())
            .stdout(std::process::Stdio::from(writer))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?}: {stderr}");
    }
}

/// Check that under sudo every file of the trace (events, run.json, the stacks, modules and
/// frames tables) belongs to the calling user, who must be able to read and delete it.
#[test]
fn sudo_caller_owns_the_whole_trace() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // The command runs as the caller (uid 65534), so it must be reachable by that user.
    let bin = dir.path().join("churn");
    std::fs::copy(build("churn.c", "gcc", &[]), &bin).unwrap();
    let trace = dir.path().join("t");
    let out = alloctrace()
        .args(["record", "-q", "-o"])
        .arg(&trace)
        .arg("--")
        .arg(&bin)
        .arg("1000")
        .env("SUDO_UID", "65534")
        .env("SUDO_GID", "65534")
        .output()
        .unwrap();
    assert_success(&out);
    let mut files = 0;
    let mut pending = vec![trace.clone()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (65534, 65534),
            "{} belongs to {}:{}",
            path.display(),
            meta.uid(),
            meta.gid()
        );
        files += 1;
        if meta.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    for table in [
        "stacks.parquet",
        "modules.parquet",
        "frames.parquet",
        "run.json",
    ] {
        assert!(trace.join(table).exists(), "{table} missing");
    }
    assert!(files >= 6, "{files} files");
}
