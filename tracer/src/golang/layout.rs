//! Where the GC facts of a cycle live in this binary, and which functions mark a cycle and a
//! stop-the-world.
//!
//! Facts (line numbers: Go 1.19.8 / Go 1.27.3 `src/runtime/`):
//!
//! * `memstats.numgc uint32` (mstats.go 39 / 40) counts completed cycles; it is incremented in
//!   `gcMarkTermination` (mgc.go 1038 / 1473), which `gcMarkDone` calls once per cycle
//!   (mgc.go 918 / 1155), before the world is restarted and gctrace is printed.
//! * gctrace's `A->B->C MB` prints `work.heap0`, `work.heap1`, `work.heap2` (mgc.go 1122 /
//!   1625); `work.heap2 = work.bytesMarked` (mgc.go 955 / 1394) and `gcMark` stores the same
//!   value into `gcController.heapMarked` via `resetLive(work.bytesMarked)` (mgc.go 1480 /
//!   2054), so
//!   `gcController.heapMarked uint64` (mgcpacer.go 256 / 235) is C once mark termination is
//!   done.
//! * gctrace's `N MB goal` prints `gcController.lastHeapGoal` (mgc.go 1123 / 1626), stored by
//!   `gcControllerState.endCycle` (mgcpacer.go 666 / 601), which `gcMarkDone` calls before
//!   `gcMarkTermination`. Same field in both versions.
//! * `work.cycles` (`uint32` in 1.19, `atomic.Uint32` in 1.27: mgc.go 396 / 501) counts started
//!   cycles: `gcStart` increments it (mgc.go 675 / 859) right before
//!   `gcController.startCycle(…)` (mgc.go 679 / 863), the only caller of
//!   `runtime.(*gcControllerState).startCycle`; `gcStart` runs many times per cycle but
//!   returns early unless its trigger still holds under `work.startSema`, so `startCycle` runs
//!   exactly once per cycle, with the world stopped.
//! * At the RET instructions of `gcMarkTermination`, numgc, heapMarked and lastHeapGoal all
//!   describe the cycle that just ended (probe the RETs, not a uretprobe: Go may move the
//!   goroutine's stack). `gcMarkTermination` releases `worldsema` and `gcsema` before it
//!   returns, so its RET can come after an unrelated stop-the-world and even after the next
//!   cycle's `startCycle` (seen under gdb with both versions): pair starts and ends by the
//!   numbers read (`work.cycles` at the start, `numgc` at the end), not by order. The fields
//!   read at the RET are still the ended cycle's: the next cycle changes them only in its own
//!   mark termination.
//!
//! Stop-the-world: Go 1.19 `stopTheWorldWithSema()` takes no argument (proc.go 1179);
//! `stopTheWorld(reason string)` stores the reason in `getg().m.preemptoff` before switching to
//! the system stack (proc.go 1086-1102), `gcMarkDone` stores `"gcing"` (mgc.go 851) and
//! `gcStart` stores nothing (`""`). Go 1.21+ passes `reason stwReason` (a `uint8`) as the
//! first argument: `stopTheWorldWithSema(reason stwReason) worldStop` (1.27 proc.go 1641), and
//! 1.27's `startTheWorldWithSema(now int64, w worldStop)` (proc.go 1773) receives the reason
//! as `w.reason`, the second integer register. The names are `runtime.stwReasonStrings`
//! (proc.go 1494), append-only by the comment at proc.go 1462.

use iced_x86::Register;

use super::{
    GoFunc,
    dwarf::{DwarfFacts, Member},
    file::GoFile,
};

/// Go 1.27.3 `src/runtime/proc.go` `stwReasonStrings`, used when the binary's own table
/// cannot be read (no symbol table). The enum only grows, so older binaries use a prefix.
pub const STW_REASONS_GO127: &[&str] = &[
    "unknown",
    "GC mark termination",
    "GC sweep termination",
    "write heap dump",
    "goroutine profile",
    "goroutine profile cleanup",
    "all goroutines stack trace",
    "read mem stats",
    "AllThreadsSyscall",
    "GOMAXPROCS",
    "start trace",
    "stop trace",
    "CountPagesInUse (test)",
    "ReadMetricsSlow (test)",
    "ReadMemStatsSlow (test)",
    "PageCachePagesLeaked (test)",
    "ResetDebugLog (test)",
];

/// A field of a runtime global variable: read `size` bytes at [`GlobalField::address`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalField {
    /// e.g. `runtime.memstats`.
    pub variable: String,
    /// e.g. `numgc`.
    pub field: String,
    /// Link-time address of the variable (add the load bias for a PIE).
    pub variable_address: u64,
    /// Offset of the field in the variable's struct, from DWARF.
    pub offset: u64,
    /// Size of the field in bytes, from DWARF.
    pub size: u64,
}

impl GlobalField {
    /// Link-time address of the field.
    pub fn address(&self) -> u64 {
        self.variable_address + self.offset
    }
}

/// A value found in the binary, or why it could not be.
pub type Located<T> = Result<T, String>;

/// How a stop-the-world's reason can be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StwReason {
    /// Go ≥ 1.21: a `stwReason` (`uint8`) in the low byte of `stop_register` at the entry of
    /// `stopTheWorldWithSema`, and in the low byte of `start_register` at the entry of
    /// `startTheWorldWithSema` (when known). `names[reason]` is its text.
    Argument {
        stop_register: Register,
        start_register: Option<Register>,
        names: Vec<String>,
        /// Where `names` came from.
        names_source: String,
    },
    /// Go < 1.21: no argument. At the entry of `stopTheWorldWithSema` (on the system stack,
    /// R14 = g0), the Go string `m.preemptoff` at `[[R14 + g_m] + m_preemptoff]` holds the
    /// reason given to `stopTheWorld`; `""` is `gcStart`'s sweep termination and `"gcing"`
    /// `gcMarkDone`'s mark termination.
    PreemptOff {
        g_m: Located<u64>,
        m_preemptoff: Located<u64>,
    },
}

/// What the eBPF side needs to follow GC cycles and stop-the-world pauses in this binary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeLayout {
    /// `memstats.numgc` (`uint32`): completed cycles.
    pub numgc: Located<GlobalField>,
    /// `gcController.heapMarked` (`uint64`): bytes marked live by the last cycle (gctrace's
    /// `C` in `A->B->C MB`).
    pub heap_marked: Located<GlobalField>,
    /// `gcController.lastHeapGoal` (`uint64`): the goal gctrace prints (`N MB goal`).
    pub heap_goal: Located<GlobalField>,
    /// `work.cycles` (`uint32`): started cycles; at `cycle_start` it is the number of the
    /// cycle that starts.
    pub cycles_started: Located<GlobalField>,
    /// `runtime.(*gcControllerState).startCycle`: once per cycle, world stopped.
    pub cycle_start: Located<GoFunc>,
    /// `runtime.gcMarkTermination`: once per cycle; probe its RETs to read the facts above.
    pub cycle_end: Located<GoFunc>,
    /// `runtime.stopTheWorldWithSema`: the world is stopped when it returns.
    pub stw_stop: Located<GoFunc>,
    /// `runtime.startTheWorldWithSema`: restarts the world.
    pub stw_start: Located<GoFunc>,
    pub stw_reason: Located<StwReason>,
}

pub(super) struct LayoutInputs<'a> {
    pub file: &'a GoFile,
    pub dwarf: Result<&'a DwarfFacts, String>,
    pub function: &'a dyn Fn(&str) -> Option<GoFunc>,
    pub version: (u32, u32),
}

pub(super) const STRUCTS: &[&str] = &[
    "runtime.mstats",
    "runtime.gcControllerState",
    "runtime.workType",
    "runtime.g",
    "runtime.m",
];
pub(super) const VARIABLES: &[&str] = &["runtime.memstats", "runtime.gcController", "runtime.work"];

fn global_field(
    inputs: &LayoutInputs<'_>,
    variable: &str,
    struct_name: &str,
    field: &str,
    expected_size: u64,
) -> Located<GlobalField> {
    let dwarf = inputs.dwarf.as_ref().map_err(Clone::clone)?;
    let Member { offset, type_ref } = dwarf.member(struct_name, field)?;
    let size = type_ref
        .and_then(|t| dwarf.size_of(t))
        .ok_or_else(|| format!("no DWARF size for {struct_name}.{field}"))?;
    if size != expected_size {
        return Err(format!(
            "{struct_name}.{field} is {size} bytes, expected {expected_size}"
        ));
    }
    let variable_address = inputs
        .file
        .symbol(variable)
        .map(|s| s.address)
        .or_else(|| dwarf.variable(variable))
        .ok_or_else(|| format!("no symbol or DWARF variable {variable}"))?;
    Ok(GlobalField {
        variable: variable.into(),
        field: field.into(),
        variable_address,
        offset,
        size,
    })
}

fn function(inputs: &LayoutInputs<'_>, name: &str) -> Located<GoFunc> {
    (inputs.function)(name).ok_or_else(|| format!("no function {name}"))
}

/// `runtime.stwReasonStrings` as stored in the binary.
fn reason_names_from_binary(file: &GoFile) -> Option<Vec<String>> {
    let sym = file.symbol("runtime.stwReasonStrings")?;
    if sym.size == 0 || !sym.size.is_multiple_of(16) || sym.size > 16 * 256 {
        return None;
    }
    (0..sym.size / 16)
        .map(|i| file.read_go_string(sym.address.checked_add(16 * i)?))
        .collect()
}

fn stw_reason(inputs: &LayoutInputs<'_>) -> Located<StwReason> {
    let dwarf = inputs.dwarf.as_ref().ok();
    let stop_params = dwarf.and_then(|d| d.params("runtime.stopTheWorldWithSema"));
    let start_params = dwarf.and_then(|d| d.params("runtime.startTheWorldWithSema"));
    let has_argument = match stop_params {
        Some(params) => params.first().is_some_and(|p| p == "reason"),
        None => inputs.version >= (1, 21),
    };
    if !has_argument {
        let offset = |s: &str, f: &str| -> Located<u64> {
            let dwarf = inputs.dwarf.as_ref().map_err(Clone::clone)?;
            dwarf.member(s, f).map(|m| m.offset)
        };
        return Ok(StwReason::PreemptOff {
            g_m: offset("runtime.g", "m"),
            m_preemptoff: offset("runtime.m", "preemptoff"),
        });
    }
    // 1.27: startTheWorldWithSema(now int64, w worldStop) → w.reason is the 2nd integer
    // register. Without DWARF, assume that shape from Go 1.22 on (worldStop's introduction).
    let start_register = match start_params {
        Some(params) if params.len() >= 2 && params[1] == "w" => Some(Register::RBX),
        Some(_) => None,
        None => (inputs.version >= (1, 22)).then_some(Register::RBX),
    };
    let (names, names_source) = match reason_names_from_binary(inputs.file) {
        Some(names) => (names, "runtime.stwReasonStrings in the binary".to_string()),
        None => (
            STW_REASONS_GO127.iter().map(|s| (*s).to_string()).collect(),
            "Go 1.27.3 src/runtime/proc.go stwReasonStrings (binary has no symbol table)"
                .to_string(),
        ),
    };
    Ok(StwReason::Argument {
        stop_register: Register::RAX,
        start_register,
        names,
        names_source,
    })
}

pub(super) fn runtime_layout(inputs: &LayoutInputs<'_>) -> RuntimeLayout {
    RuntimeLayout {
        numgc: global_field(inputs, "runtime.memstats", "runtime.mstats", "numgc", 4),
        heap_marked: global_field(
            inputs,
            "runtime.gcController",
            "runtime.gcControllerState",
            "heapMarked",
            8,
        ),
        heap_goal: global_field(
            inputs,
            "runtime.gcController",
            "runtime.gcControllerState",
            "lastHeapGoal",
            8,
        ),
        cycles_started: global_field(inputs, "runtime.work", "runtime.workType", "cycles", 4),
        cycle_start: function(inputs, "runtime.(*gcControllerState).startCycle"),
        cycle_end: function(inputs, "runtime.gcMarkTermination"),
        stw_stop: function(inputs, "runtime.stopTheWorldWithSema"),
        stw_start: function(inputs, "runtime.startTheWorldWithSema"),
        stw_reason: stw_reason(inputs),
    }
}
