//! A recording under way: the ring buffer drained into the writer, the side tables and
//! `run.json` kept current.

use aya::maps::{MapData, RingBuf};
use nix::{
    sys::signal::{Signal, kill},
    time::ClockId,
    unistd::Pid,
};
use trace_format::{
    names::{Event as Column, Runtime},
    run::{RunInfo, Status},
    schema,
    write::{ModuleRow, TraceWriter, modules_batch, processes_batch, write_table},
};
use tracer_common::{
    counter::Counter,
    process::{ProcessChange, exit_status},
};

use super::{
    RecordError, RecordOptions,
    attach::Attacher,
    decode,
    error::io_err,
    live::{Frees, LiveLine, Stats},
    process, rows, rss, stacks,
    tree::ProcessTable,
};
use crate::ebpf::{AttachError, LoadError, Programs};

/// `run.json` counter of ring records user space could not decode (see
/// [`Recording::undecodable`]); counted in `lost_total`.
pub const UNDECODABLE: &str = "lost_undecodable";
/// `run.json` counter of rows lost with the open segment when recording stopped on an error.
pub const UNWRITTEN: &str = "lost_unwritten";

pub(super) struct Recording<'a> {
    pub(super) options: &'a RecordOptions,
    pub(super) programs: Option<Programs>,
    pub(super) ring: RingBuf<MapData>,
    pub(super) counters: aya::maps::PerCpuArray<MapData, u64>,
    /// Rows written per probe id.
    pub(super) probe_events: Vec<u64>,
    pub(super) attacher: Attacher,
    pub(super) writer: TraceWriter,
    pub(super) run: RunInfo,
    pub(super) stats: Stats,
    pub(super) types: rows::TypeCache,
    pub(super) stacks: stacks::StackTable,
    pub(super) python_names: stacks::PythonNames,
    /// Holds at `Py_FinalizeEx` released so far (`Counter::PyHeldAtFinalize`).
    pub(super) released: u64,
    /// Last GC generation started per thread.
    pub(super) gc_generation: rustc_hash::FxHashMap<u32, u32>,
    pub(super) stack_map:
        Option<aya::maps::HashMap<MapData, u64, tracer_common::stack::StackValue>>,
    /// Go allocation calls in progress (entry seen, result not yet).
    pub(super) go_calls: Option<
        aya::maps::HashMap<MapData, tracer_common::golang::GoKey, tracer_common::golang::GoCall>,
    >,
    pub(super) live: LiveLine,
    /// Processes that mapped new code since the last drain (their rows showed it).
    pub(super) rescan: Vec<u32>,
    /// Every process traced.
    pub(super) processes: ProcessTable,
    /// Processes stopped at exec or after mapping an executable file, until their new code
    /// is probed.
    pub(super) held: Vec<u32>,
    /// Processes stopped at `Py_FinalizeEx`, until the ring is drained.
    pub(super) finalizing: Vec<u32>,
    /// Ring records that did not decode (a layout mismatch between the eBPF object and this
    /// binary, which the build prevents): counted as lost, never dropped silently.
    pub(super) undecodable: u64,
    /// The resident-memory sampler (the `rss` category).
    pub(super) rss: Option<rss::RssSampler>,
}

/// Whatever ends the recording (an error included), a process held at `Py_FinalizeEx` is
/// resumed: it must never be left stopped.
impl Drop for Recording<'_> {
    fn drop(&mut self) {
        for pid in self.held.drain(..).chain(self.finalizing.drain(..)) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
        }
        let held = self.holds();
        if held > self.released {
            self.resume(held);
        }
    }
}

impl Recording<'_> {
    /// Moves everything waiting in the ring into the writer.
    pub(super) fn drain(&mut self) -> Result<(), RecordError> {
        let t = std::time::Instant::now();
        let (events0, new0) = (self.stats.events, self.stacks.len());
        self.python_names.next_epoch();
        let result = self.drain_ring();
        if t.elapsed() > std::time::Duration::from_millis(200) {
            log::debug!(
                "drain took {:?}: {} events, {} new stacks",
                t.elapsed(),
                self.stats.events - events0,
                self.stacks.len() - new0
            );
        }
        result
    }

    fn drain_ring(&mut self) -> Result<(), RecordError> {
        // Samples taken so far are older than anything not yet in the ring: merged by time
        // with the ring's events, they keep the rows in time order.
        let samples = self.rss.as_ref().map(|s| s.take()).unwrap_or_default();
        let mut samples = samples.into_iter().peekable();
        while let Some(item) = self.ring.next() {
            let Some(event) = decode::decode(&item) else {
                self.undecodable += 1;
                continue;
            };
            drop(item);
            let ts_ns = event.header().ts_ns;
            while let Some(sample) = samples.next_if(|s| s.ts_ns <= ts_ns) {
                push_rss(&mut self.processes, &mut self.writer, &sample)?;
            }
            if let decode::Event::Process {
                header,
                change,
                event,
            } = event
            {
                on_process(
                    &mut self.processes,
                    &mut self.attacher,
                    (&mut self.held, &mut self.finalizing),
                    (header.pid, header.ts_ns),
                    change,
                    &event,
                );
                if change == ProcessChange::Fork
                    && let Some(sampler) = &self.rss
                {
                    sampler.add_pid(header.pid);
                }
                continue;
            }
            if let Some(n) = self.probe_events.get_mut(event.header().probe as usize) {
                *n += 1;
            }
            let pid = event.header().pid;
            if rows::maps_new_code(&event) && !self.rescan.contains(&pid) {
                self.rescan.push(pid);
            }
            self.processes.count_event(pid);
            self.types.learn(&event, &self.attacher.table);
            let stack_id = event.stack().and_then(|key| {
                let (id, new) = self.stacks.intern(key)?;
                if new && let Some(map) = &self.stack_map {
                    self.stacks.load(
                        id,
                        key,
                        map,
                        &mut self.python_names,
                        pid,
                        self.attacher.python_frames.as_ref(),
                    );
                }
                Some(id)
            });
            let mut row = rows::to_row(&event, &self.attacher.table, &self.types, stack_id);
            let frees = if row.runtime == Runtime::Go {
                Frees::Unseen
            } else {
                Frees::Seen
            };
            self.stats.observe(&event, frees);
            // A collection's end row carries the generation its start row announced (CPython's
            // end probes cannot read it; a thread runs one collection at a time), or none when
            // the start had none (3.13's automatic collections).
            if row.runtime == Runtime::Python {
                if row.event == Column::GcStart {
                    match row.gc_generation {
                        Some(g) => self.gc_generation.insert(row.tid, g),
                        None => self.gc_generation.remove(&row.tid),
                    };
                } else if row.event == Column::GcEnd && row.gc_generation.is_none() {
                    row.gc_generation = self.gc_generation.get(&row.tid).copied();
                }
            }
            self.writer.push(&row)?;
        }
        for sample in samples {
            push_rss(&mut self.processes, &mut self.writer, &sample)?;
        }
        // Probe the new code of held processes, then let them go (whatever happened: a
        // process must never be left stopped).
        let held = std::mem::take(&mut self.held);
        let rescan = std::mem::take(&mut self.rescan);
        let mut result = Ok(());
        for &pid in held.iter().chain(rescan.iter()) {
            if let Some(programs) = self.programs.as_mut()
                && result.is_ok()
            {
                match self.attacher.scan_process(programs, pid) {
                    Ok(_) | Err(AttachError::ProcessGone { .. }) => {}
                    Err(err) => result = Err(err.into()),
                }
                let runtimes = self.attacher.runtimes_of(pid);
                self.processes.set_runtime(pid, &runtimes);
            }
        }
        for pid in held {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
        }
        self.stats.processes = self.processes.total();
        self.stats.processes_running = self.processes.live_count();
        result
    }

    /// Processes the records say run, checked against `/proc` (an exit record lost with a
    /// full ring must not keep the recording waiting): those gone are ended now.
    pub(super) fn end_vanished(&mut self) {
        for pid in self.processes.live_pids() {
            if process::has_exited(pid) {
                let now = process::now(ClockId::CLOCK_MONOTONIC);
                self.processes.exit(pid, now, None, None);
            }
        }
        self.stats.processes_running = self.processes.live_count();
    }

    /// Rewrites `stacks.parquet` (new stacks read from the kernel map) and `modules.parquet`.
    pub(super) fn write_side_tables(&mut self) -> Result<(), RecordError> {
        let dir = &self.options.output;
        if !self.stacks.is_empty() {
            let t = std::time::Instant::now();
            self.stacks.write(&dir.join(schema::STACKS_FILE))?;
            log::debug!("stacks.parquet written in {:?}", t.elapsed());
        }
        write_table(
            &dir.join(schema::PROCESSES_FILE),
            &processes_batch(&self.processes.rows())?,
        )?;
        let modules: Vec<ModuleRow> = self
            .attacher
            .process_modules
            .iter()
            .map(|(pid, m)| ModuleRow {
                pid: *pid,
                path: m.path.clone(),
                build_id: (!m.build_id.is_empty()).then(|| m.build_id.clone()),
                start: m.start,
                end: m.end,
                file_offset: m.file_offset,
                perms: m.perms.clone(),
                ts_ns: 0,
            })
            .collect();
        write_table(&dir.join(schema::MODULES_FILE), &modules_batch(&modules)?)?;
        Ok(())
    }

    pub(super) fn counter(&self, counter: Counter) -> Vec<u64> {
        self.counters
            .get(&(counter as u32), 0)
            .map(|v| v.to_vec())
            .unwrap_or_default()
    }

    /// Resumes a process the eBPF side stopped at `Py_FinalizeEx`, once the ring holds nothing
    /// from before the stop: every stack is then named (see `stacks`).
    pub(super) fn release_held(&mut self) -> Result<(), RecordError> {
        if !self.finalizing.is_empty() {
            self.drain()?;
            for pid in std::mem::take(&mut self.finalizing) {
                self.released += 1;
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
            }
        }
        // A hold whose record was lost (ring full): resume every process.
        let held = self.holds();
        if held > self.released {
            self.drain()?;
            self.resume(held);
        }
        Ok(())
    }

    /// Times the process was held at `Py_FinalizeEx`; the hold probe exists only with Python
    /// frames, so the counter is not read (a map lookup per loop turn) otherwise.
    pub(super) fn holds(&self) -> u64 {
        if self.attacher.python_frames.is_none() {
            return 0;
        }
        self.counter(Counter::PyHeldAtFinalize).iter().sum()
    }

    /// Sends SIGCONT to every traced process; `held` holds are then released.
    pub(super) fn resume(&mut self, held: u64) {
        self.released = held;
        for pid in self.processes.live_pids() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
        }
    }

    pub(super) fn lost_so_far(&self) -> u64 {
        self.counter(Counter::RingFull).iter().sum()
    }

    /// Fills in counters, probes, segments; `final_status` when done.
    pub(super) fn update_run_info(&mut self, final_status: Option<Status>) {
        let run = &mut self.run;
        run.counters.clear();
        let mut lost_total = 0;
        for counter in Counter::ALL {
            let per_cpu: Vec<u64> = self
                .counters
                .get(&(counter as u32), 0)
                .map(|v| v.to_vec())
                .unwrap_or_default();
            let total: u64 = per_cpu.iter().sum();
            if counter == Counter::RingFull {
                run.lost_per_cpu = per_cpu;
            }
            if counter.is_loss() {
                lost_total += total;
            }
            run.counters.insert(counter.name().to_owned(), total);
        }
        run.counters
            .insert(UNDECODABLE.to_owned(), self.undecodable);
        run.lost_total = lost_total + self.undecodable;
        run.probes = self.attacher.table.probes.clone();
        for probe in &mut run.probes {
            probe.events = self
                .probe_events
                .get(probe.id as usize)
                .copied()
                .unwrap_or(0);
        }
        run.modules = self.attacher.modules.clone();
        run.warnings = self.attacher.warnings.clone();
        run.runtimes = self.attacher.runtimes.clone();
        // At the end, a Go allocation whose entry was seen but whose result never was: a
        // goroutine still inside the allocator when the process ended, or a result probe
        // missing on some path (which the result-site analysis rules out).
        if final_status.is_some()
            && let (Some(serde_json::Value::Object(go)), Some(calls)) =
                (run.runtimes.get_mut("go"), &self.go_calls)
        {
            let open = calls
                .iter()
                .flatten()
                .filter(|(_, call)| call.depth > 0)
                .count();
            go.insert("calls_without_result_at_end".to_owned(), open.into());
        }
        if let Some(serde_json::Value::Object(frames)) = run
            .runtimes
            .get_mut("python")
            .and_then(|p| p.get_mut("python_frames"))
            && self.attacher.python_frames.is_some()
        {
            frames.insert(
                "code_objects_read".to_owned(),
                self.python_names.code_objects_read.into(),
            );
            // Frames whose code object was freed before the reader got to it (module bodies
            // run at import, while the reader lags behind): named `<unknown>`.
            frames.insert(
                "frames_unnamed".to_owned(),
                self.python_names.frames_unnamed.into(),
            );
        }
        run.rss = self.rss.as_ref().map(|s| s.info());
        run.segments = self.writer.segments().to_vec();
        run.events_written = self.writer.rows_written();
        if let Some(status) = final_status {
            run.status = status;
            run.clock.monotonic_end_ns = process::now(ClockId::CLOCK_MONOTONIC);
        }
    }

    /// Marks the trace as ended by `err` in `run.json`, best effort: the writer may be what
    /// failed, so only the segments closed so far are listed.
    pub(super) fn fail(&mut self, err: &RecordError) {
        self.update_run_info(Some(Status::Failed));
        // Rows pushed after the last closed segment never reach a reader.
        let unwritten = self.writer.rows_written() + self.writer.rows_buffered() as u64
            - self.writer.rows_closed();
        self.run.events_written = self.writer.rows_closed();
        self.run.lost_total += unwritten;
        self.run.counters.insert(UNWRITTEN.to_owned(), unwritten);
        self.run.warnings.push(format!(
            "recording stopped by an error: {}",
            error_chain(err)
        ));
        let _ = self.run.write(&self.options.output);
    }

    pub(super) fn write_run_info(
        &mut self,
        final_status: Option<Status>,
    ) -> Result<(), RecordError> {
        self.update_run_info(final_status);
        self.run.write(&self.options.output).map_err(io_err(format!(
            "writing {}",
            self.options.output.join(schema::RUN_JSON).display()
        )))
    }
}

/// Writes a resident-memory sample's row, counted for its process like every other row (a
/// free function: the ring is borrowed while samples are merged in).
fn push_rss(
    processes: &mut ProcessTable,
    writer: &mut TraceWriter,
    sample: &rss::Sample,
) -> Result<(), RecordError> {
    processes.count_event(sample.pid);
    writer.push(&rss_row(sample))?;
    Ok(())
}

/// The `rss` row of a sample.
fn rss_row(sample: &rss::Sample) -> trace_format::write::Row<'static> {
    trace_format::write::Row {
        ts_ns: sample.ts_ns,
        pid: sample.pid,
        tid: sample.pid,
        event: Column::Rss,
        func: rss::FUNC,
        rss_bytes: Some(sample.rss_bytes),
        heap_rss_bytes: Some(sample.heap_rss_bytes),
        ..trace_format::write::Row::default()
    }
}

/// A change in the process tree: the table follows it, and a held process is queued to be
/// probed and resumed (`held`) or resumed once the ring is drained (`finalizing`).
fn on_process(
    processes: &mut ProcessTable,
    attacher: &mut Attacher,
    (held, finalizing): (&mut Vec<u32>, &mut Vec<u32>),
    (pid, ts_ns): (u32, u64),
    change: ProcessChange,
    event: &tracer_common::process::ProcessEvent,
) {
    match change {
        ProcessChange::Fork => {
            processes.start(pid, Some(event.other), ts_ns);
            attacher.inherit(event.other, pid);
            processes.set_runtime(pid, &attacher.runtimes_of(pid));
        }
        ProcessChange::Exec => processes.exec(pid, ts_ns),
        ProcessChange::Mapped => {}
        ProcessChange::Exit => {
            let (code, signal) = exit_status(event.status);
            processes.exit(pid, ts_ns, code.map(i32::from), signal.map(i32::from));
        }
        ProcessChange::Finalize => {
            if event.held != 0 {
                finalizing.push(pid);
            }
            return;
        }
    }
    if event.held != 0 && !held.contains(&pid) {
        held.push(pid);
    }
}

pub(super) fn take_map<T>(programs: &mut Programs, name: &'static str) -> Result<T, LoadError>
where
    T: TryFrom<aya::maps::Map>,
{
    programs
        .take_map(name)
        .and_then(|m| T::try_from(m).ok())
        .ok_or(LoadError::Missing { what: "map", name })
}

/// `err` and its sources on one line, as the binary prints it.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
