//! End-to-end tests of `alloctrace record`: real eBPF programs tracing real programs that the
//! tests compile, checked against the programs' own counters.
//!
//! They need root (CAP_BPF, CAP_PERFMON, ptrace) and run one at a time
//! (`cargo xtask test` passes `--test-threads=1`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;
