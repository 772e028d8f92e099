//! Why a recording could not start or go on.

use std::{io, path::PathBuf};

use trace_format::write::WriteError;

use super::spawn::SpawnError;
use crate::ebpf::{AttachError, LoadError};

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(
        "alloctrace needs root (or CAP_BPF and CAP_PERFMON) to load eBPF programs: run it with sudo"
    )]
    NotPrivileged,
    #[error("output directory {} is not empty (choose another with -o, or pass --force to replace the trace in it)", path.display())]
    OutputNotEmpty { path: PathBuf },
    #[error("cannot write to output directory {}", path.display())]
    Output {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no process with pid {pid}")]
    NoSuchProcess { pid: u32 },
    #[error("process {pid} has exited")]
    ProcessExited { pid: u32 },
    #[error("{}", no_allocators_message(exe, *stripped))]
    NoAllocators { exe: String, stripped: bool },
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error("writing the trace")]
    Write(#[from] WriteError),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

fn no_allocators_message(exe: &str, stripped: bool) -> String {
    if stripped {
        format!(
            "no allocator functions found in {exe} or its libraries: the binary is stripped (no symbol table); trace a build that keeps its symbols"
        )
    } else {
        format!(
            "no allocator functions (malloc, operator new, ...) found in {exe} or its libraries"
        )
    }
}

pub(super) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> RecordError {
    let what = what.into();
    move |source| RecordError::Io { what, source }
}
