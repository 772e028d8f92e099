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
use trace_format::write::GoCycle;

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
    /// The runtime's span accounting (`MemStats.HeapInuse`, `HeapIdle`, `HeapReleased`,
    /// `StackInuse`), read at each cycle end.
    pub heap_stats: Located<Vec<CycleStat>>,
    /// The runtime's GC CPU accounting behind gctrace's `N%` (`memstats.gc_cpu_fraction`),
    /// read at each cycle end.
    pub cpu_stats: Located<Vec<CycleStat>>,
}

/// What a value read at a cycle's end contributes to its `gc_end` row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum CycleValue {
    /// `gcController.heapInUse`: bytes in in-use spans (`MemStats.HeapInuse`).
    HeapInuse,
    /// `gcController.heapFree`: free spans not returned to the OS (part of `HeapIdle`).
    HeapFree,
    /// `gcController.heapReleased`: free spans returned to the OS (`HeapReleased`, part of
    /// `HeapIdle`).
    HeapReleased,
    /// One slot of `memstats.heapStats.stats[3]` `.inStacks`: their sum is `StackInuse`.
    StackInuse,
    /// GC CPU time counted by the runtime, in ns (summed): Go 1.19 `work.totaltime`; Go 1.21+
    /// `work.cpuStats.GCTotalTime`.
    GcCpu,
    /// Subtracted from the GC CPU time: Go 1.21+ `work.cpuStats.GCIdleTime` (idle mark workers,
    /// which gctrace leaves out as "free").
    GcIdleCpu,
    /// The CPU time available to Go since the process started (elapsed × GOMAXPROCS,
    /// integrated over GOMAXPROCS changes): Go 1.21+ `work.cpuStats.TotalTime`.
    CpuCapacity,
    /// Go < 1.21, the same capacity from its parts: `sched.totaltime` (up to the last
    /// GOMAXPROCS change) ...
    SchedTotalTime,
    /// ... `sched.procresizetime` (that change's time) ...
    ProcResizeTime,
    /// ... and `memstats.last_gc_nanotime` (the cycle end's `now`): capacity =
    /// totaltime + (now − procresizetime) × gomaxprocs (mgc.go 1019 in 1.19).
    CycleEndTime,
    /// `runtime.gomaxprocs`.
    Gomaxprocs,
}

/// The `gc_end` columns from `(meaning, raw bytes read, size)`; 4-byte values are `int32`,
/// 8-byte `int64` or `uint64`.
pub fn cycle_figures(values: impl IntoIterator<Item = (CycleValue, u64, u8)>) -> GoCycle {
    let mut sums: [Option<i128>; 11] = [None; 11];
    for (what, raw, size) in values {
        let v = if size == 4 {
            i128::from(raw as u32 as i32)
        } else {
            i128::from(raw as i64)
        };
        let slot = &mut sums[what as usize];
        *slot = Some(slot.unwrap_or(0) + v);
    }
    let get = |what: CycleValue| sums[what as usize];
    let non_negative = |v: Option<i128>| v.and_then(|v| u64::try_from(v).ok());
    let (free, released) = (get(CycleValue::HeapFree), get(CycleValue::HeapReleased));
    let gomaxprocs = get(CycleValue::Gomaxprocs);
    let capacity = get(CycleValue::CpuCapacity).or_else(|| {
        Some(
            get(CycleValue::SchedTotalTime)?
                + (get(CycleValue::CycleEndTime)? - get(CycleValue::ProcResizeTime)?) * gomaxprocs?,
        )
    });
    GoCycle {
        heap_inuse: non_negative(get(CycleValue::HeapInuse)),
        heap_idle: non_negative(free.zip(released).map(|(f, r)| f + r)),
        heap_released: non_negative(released),
        stack_inuse: non_negative(get(CycleValue::StackInuse)),
        gc_cpu_ns: non_negative(
            get(CycleValue::GcCpu).map(|c| c - get(CycleValue::GcIdleCpu).unwrap_or(0)),
        ),
        cpu_capacity_ns: non_negative(capacity),
        gomaxprocs: gomaxprocs.and_then(|g| u32::try_from(g).ok()),
    }
}

/// A value to read at each cycle's end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CycleStat {
    pub value: CycleValue,
    pub field: GlobalField,
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
    "runtime.consistentHeapStats",
    "runtime.heapStatsDelta",
    "runtime.cpuStats",
    "runtime.schedt",
];
pub(super) const VARIABLES: &[&str] = &[
    "runtime.memstats",
    "runtime.gcController",
    "runtime.work",
    "runtime.sched",
    "runtime.gomaxprocs",
];

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
    let variable_address = variable_address(inputs, dwarf, variable)?;
    Ok(GlobalField {
        variable: variable.into(),
        field: field.into(),
        variable_address,
        offset,
        size,
    })
}

/// A field reached through nested members (`path`: struct, member pairs from the variable's
/// type inwards), with `extra` bytes added (an array element).
fn nested_field(
    inputs: &LayoutInputs<'_>,
    variable: &str,
    path: &[(&str, &str)],
    extra: u64,
    expected_size: u64,
) -> Located<GlobalField> {
    let dwarf = inputs.dwarf.as_ref().map_err(Clone::clone)?;
    let (mut offset, mut size) = (extra, None);
    for (struct_name, field) in path {
        let member = dwarf.member(struct_name, field)?;
        offset += member.offset;
        size = member.type_ref.and_then(|t| dwarf.size_of(t));
    }
    let size = size.ok_or_else(|| format!("no DWARF size for {variable} {path:?}"))?;
    if size != expected_size {
        return Err(format!(
            "{path:?} is {size} bytes, expected {expected_size}"
        ));
    }
    let variable_address = variable_address(inputs, dwarf, variable)?;
    Ok(GlobalField {
        variable: variable.into(),
        field: path.iter().map(|(_, f)| *f).collect::<Vec<_>>().join("."),
        variable_address,
        offset,
        size,
    })
}

fn variable_address(inputs: &LayoutInputs<'_>, dwarf: &DwarfFacts, variable: &str) -> Located<u64> {
    inputs
        .file
        .symbol(variable)
        .map(|s| s.address)
        .or_else(|| dwarf.variable(variable))
        .ok_or_else(|| format!("no symbol or DWARF variable {variable}"))
}

/// A global scalar variable of `size` bytes (`runtime.gomaxprocs`).
fn global(inputs: &LayoutInputs<'_>, variable: &str, size: u64) -> Located<GlobalField> {
    let dwarf = inputs.dwarf.as_ref().map_err(Clone::clone)?;
    Ok(GlobalField {
        variable: variable.into(),
        field: String::new(),
        variable_address: variable_address(inputs, dwarf, variable)?,
        offset: 0,
        size,
    })
}

/// `gcController.heapInUse/heapFree/heapReleased` and the three `inStacks` slots: what
/// `readmemstats_m` turns into HeapInuse, HeapIdle (free + released), HeapReleased and
/// StackInuse (mstats.go 499-520 in 1.19, 514-535 in 1.27; same fields in both).
fn heap_stats(inputs: &LayoutInputs<'_>) -> Located<Vec<CycleStat>> {
    let controller = |field: &str, value| {
        global_field(
            inputs,
            "runtime.gcController",
            "runtime.gcControllerState",
            field,
            8,
        )
        .map(|field| CycleStat { value, field })
    };
    let mut stats = vec![
        controller("heapInUse", CycleValue::HeapInuse)?,
        controller("heapFree", CycleValue::HeapFree)?,
        controller("heapReleased", CycleValue::HeapReleased)?,
    ];
    // memstats.heapStats.stats is a ring of three deltas whose sum is the total
    // (`consistentHeapStats.unsafeRead`).
    let dwarf = inputs.dwarf.as_ref().map_err(Clone::clone)?;
    let ring = dwarf.member("runtime.consistentHeapStats", "stats")?;
    let ring_size = ring
        .type_ref
        .and_then(|t| dwarf.size_of(t))
        .ok_or("no DWARF size for consistentHeapStats.stats")?;
    if ring_size == 0 || !ring_size.is_multiple_of(3) {
        return Err(format!(
            "consistentHeapStats.stats is {ring_size} bytes, not 3 deltas"
        ));
    }
    for slot in 0..3 {
        let field = nested_field(
            inputs,
            "runtime.memstats",
            &[
                ("runtime.mstats", "heapStats"),
                ("runtime.consistentHeapStats", "stats"),
                ("runtime.heapStatsDelta", "inStacks"),
            ],
            slot * (ring_size / 3),
            8,
        )?;
        stats.push(CycleStat {
            value: CycleValue::StackInuse,
            field: GlobalField {
                field: format!("heapStats.stats[{slot}].inStacks"),
                ..field
            },
        });
    }
    Ok(stats)
}

/// What `gcMarkTermination` divides to get `memstats.gc_cpu_fraction`, which gctrace prints as
/// `N%`: Go 1.21+ `(cpuStats.GCTotalTime − GCIdleTime) / cpuStats.TotalTime` (mgc.go 1455 in
/// 1.27); Go 1.19 `work.totaltime / (sched.totaltime + (now − sched.procresizetime) ×
/// gomaxprocs)` (mgc.go 1019-1020), `now` being stored as `memstats.last_gc_nanotime`.
fn cpu_stats(inputs: &LayoutInputs<'_>) -> Located<Vec<CycleStat>> {
    let dwarf = inputs.dwarf.as_ref().map_err(Clone::clone)?;
    let stat = |value, field: Located<GlobalField>| field.map(|field| CycleStat { value, field });
    let mut stats = if dwarf.member("runtime.workType", "cpuStats").is_ok() {
        let cpu = |field: &str, value| {
            stat(
                value,
                nested_field(
                    inputs,
                    "runtime.work",
                    &[
                        ("runtime.workType", "cpuStats"),
                        ("runtime.cpuStats", field),
                    ],
                    0,
                    8,
                ),
            )
        };
        vec![
            cpu("GCTotalTime", CycleValue::GcCpu)?,
            cpu("GCIdleTime", CycleValue::GcIdleCpu)?,
            cpu("TotalTime", CycleValue::CpuCapacity)?,
        ]
    } else {
        vec![
            stat(
                CycleValue::GcCpu,
                global_field(inputs, "runtime.work", "runtime.workType", "totaltime", 8),
            )?,
            stat(
                CycleValue::SchedTotalTime,
                global_field(inputs, "runtime.sched", "runtime.schedt", "totaltime", 8),
            )?,
            stat(
                CycleValue::ProcResizeTime,
                global_field(
                    inputs,
                    "runtime.sched",
                    "runtime.schedt",
                    "procresizetime",
                    8,
                ),
            )?,
            stat(
                CycleValue::CycleEndTime,
                global_field(
                    inputs,
                    "runtime.memstats",
                    "runtime.mstats",
                    "last_gc_nanotime",
                    8,
                ),
            )?,
        ]
    };
    stats.push(stat(
        CycleValue::Gomaxprocs,
        global(inputs, "runtime.gomaxprocs", 4),
    )?);
    Ok(stats)
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
        heap_stats: heap_stats(inputs),
        cpu_stats: cpu_stats(inputs),
    }
}
