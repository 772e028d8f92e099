//! User call stacks: captured at a probe, deduplicated in `STACKS` under a hash of their frames.

use core::ffi::c_void;

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::{bpf_probe_read_user, generated},
    macros::map,
    maps::PerCpuArray,
    programs::ProbeContext,
};
use tracer_common::{
    counter::Counter,
    golang::GoStackBounds,
    maps::MAX_STACK_FRAMES,
    probe::{STACK_CALLER_FIXUP, STACK_CAPTURE, STACK_OWN_WALK, STACK_PYTHON},
    python::MAX_PY_FRAMES,
    stack::StackValue,
};

use crate::{
    emit::bump,
    maps::{STACKS, TaskStorage},
    regs::stack_pointer,
};

type Frames = [u64; MAX_STACK_FRAMES as usize];

/// The user stack at this probe, as configured by `stack` (`STACK_*` bits), stored in `STACKS`
/// under a 64-bit hash of its frames (and caller fixup); returns that key, or 0 for none.
/// `scratch` is the thread's buffer for assembling it. Walked by the kernel: `STACK_OWN_WALK` is
/// for [`capture_go_stack`].
#[inline(always)]
pub fn capture_stack(ctx: &ProbeContext, stack: u8, scratch: &mut StackValue) -> u64 {
    if stack & STACK_CAPTURE == 0 {
        return 0;
    }
    capture(ctx, stack, scratch, None)
}

/// [`capture_stack`] for Go's probes, with the thread's [`GoStack`] as the buffer: the program
/// may walk the stack itself (`STACK_OWN_WALK`), and there are no Python frames to walk.
/// `bounds` are the stack of goroutine `g` as the caller last knew them; the own walk reads
/// them again from `g` when RSP is not inside them.
/// Separate entries keep each program to the code it needs: with both walks in one program the
/// verifier followed the CPython walk's loops once per way out of the own walk (~335,000 steps
/// to load `go_alloc_enter`, against ~8,000 then and ~24,000 now).
///
/// `pick` names words the probe wants from the walk's first copy of the stack (see [`Pick`]).
#[inline(always)]
pub fn capture_go_stack(
    ctx: &ProbeContext,
    stack: u8,
    g: u64,
    bounds: &mut GoStackBounds,
    pick: &mut Pick,
) -> u64 {
    capture_go(
        ctx,
        stack,
        Bounds::<fn(u64) -> GoStackBounds>::Kept(g, bounds),
        pick,
    )
}

/// [`capture_go_stack`] for a probe that keeps no bounds of its own: the walk takes those its
/// buffer walked with last when they hold RSP, else `otherwise(rsp)`. Bounds only size the
/// copies (see [`StackWindow::bounds`]), so another goroutine's do no harm; keeping them in
/// the buffer spares `go_alloc_site` its goroutine's `GO_CALLS` lookup (~30 ns) on most hits.
#[inline(always)]
pub fn capture_go_stack_last_bounds<F: FnOnce(u64) -> GoStackBounds>(
    ctx: &ProbeContext,
    stack: u8,
    otherwise: F,
    pick: &mut Pick,
) -> u64 {
    capture_go(ctx, stack, Bounds::LastOr(otherwise), pick)
}

/// Where a Go walk takes its stack bounds from.
enum Bounds<'a, F> {
    /// Goroutine `g`'s, as the caller keeps them: read again from `g` when RSP is not inside.
    Kept(u64, &'a mut GoStackBounds),
    /// The buffer's last, when they hold RSP; else what `F` gives for RSP.
    LastOr(F),
}

#[inline(always)]
fn capture_go<F: FnOnce(u64) -> GoStackBounds>(
    ctx: &ProbeContext,
    stack: u8,
    bounds: Bounds<'_, F>,
    pick: &mut Pick,
) -> u64 {
    if stack & STACK_CAPTURE == 0 {
        return 0;
    }
    let Some(buffer) = GoStackBuffer::claim() else {
        // No buffer to walk the stack into: the row keeps its allocation but loses its stack,
        // and says so.
        bump(Counter::StackLost);
        return 0;
    };
    // SAFETY: claimed for this program run: nothing else uses it until `release`.
    let go = unsafe { &mut *buffer.stack };
    if stack & STACK_OWN_WALK != 0 {
        let sp = stack_pointer(ctx);
        match bounds {
            Bounds::Kept(g, bounds) => {
                if !bounds.holds(sp) {
                    *bounds = read_stack_bounds(g);
                }
                go.window.set_bounds(*bounds);
            }
            Bounds::LastOr(otherwise) => {
                if !go.window.bounds().holds(sp) {
                    go.window.set_bounds(otherwise(sp));
                }
            }
        }
    }
    go.window.set_pick(pick.offsets);
    let key = capture(ctx, stack, &mut go.scratch, Some(&mut go.window));
    go.window.take_picked(pick);
    buffer.release();
    key
}

/// Words of user stack at byte offsets from RSP that a probe wants, read from the stack walk's
/// first copy when it holds them: `go_alloc_site` takes a call's size and type from the
/// caller's spill slots there instead of reading user memory again (~170 ns a read here,
/// docs/benchmarks.md "Go's stacks").
pub struct Pick {
    /// Byte offsets from RSP; [`NO_PICK`] for none.
    pub offsets: [u64; 2],
    pub values: [u64; 2],
    /// Bit `j` set: `values[j]` was found.
    pub found: u64,
}

/// A [`Pick`] offset that asks for nothing.
pub const NO_PICK: u64 = u64::MAX;

impl Pick {
    pub const NONE: Pick = Pick {
        offsets: [NO_PICK; 2],
        values: [0; 2],
        found: 0,
    };
}

/// The [`GoStack`] a Go probe walks with: this CPU's, or the thread's when the CPU's is taken.
///
/// Per CPU first because where the copy lands costs: a read of user memory into a per-CPU
/// value costs ~35 ns less than into task storage (whose slab object the kernel's usercopy
/// hardening looks up), and the task-storage lookup goes too; `go_alloc_enter` with stacks ran
/// in 777 ns against 875–894 (`bpf_stats`, Go 1.27 churn, interleaved recordings). But a
/// program can be preempted (`CONFIG_PREEMPT`), and another thread's walk on the same CPU would
/// then overwrite the value: `busy` marks it taken, and the preempting walk uses its thread's
/// own buffer instead. A plain flag is enough: both programs run on this CPU (migration is
/// disabled while a program runs), so whichever runs between the other's test and set runs to
/// its end first.
struct GoStackBuffer {
    stack: *mut GoStack,
    /// This CPU's flag to clear, or null for the thread's buffer.
    busy: *mut u64,
}

impl GoStackBuffer {
    #[inline(always)]
    fn claim() -> Option<Self> {
        if let Some(cpu) = GO_STACK_CPU.get_ptr_mut(0) {
            // SAFETY: this CPU's value of a live map; see the type's comment for why a plain
            // (volatile) flag guards it.
            unsafe {
                let busy = &raw mut (*cpu).busy;
                if core::ptr::read_volatile(busy) == 0 {
                    core::ptr::write_volatile(busy, 1);
                    return Some(Self {
                        stack: &raw mut (*cpu).stack,
                        busy,
                    });
                }
            }
        }
        // The goroutine stays on this thread while the probe runs.
        let stack = GO_STACKS.current(true)?;
        Some(Self {
            stack,
            busy: core::ptr::null_mut(),
        })
    }

    #[inline(always)]
    fn release(self) {
        if !self.busy.is_null() {
            // SAFETY: the flag `claim` set, in this CPU's value.
            unsafe { core::ptr::write_volatile(self.busy, 0) };
        }
    }
}

/// `g.stack` of goroutine `g` (zero if it cannot be read: the walk then copies without a
/// bound). One read of user memory, made once per goroutine and stack move.
#[inline(always)]
pub fn read_stack_bounds(g: u64) -> GoStackBounds {
    // SAFETY: reads user memory through the helper, which handles faults.
    let bounds = unsafe { bpf_probe_read_user(g as *const GoStackBounds) }.unwrap_or_default();
    if bounds.lo < bounds.hi {
        bounds
    } else {
        GoStackBounds::default()
    }
}

/// `window`: Go's copy of user stack (Go's probes only), for the own walk.
#[inline(always)]
fn capture(
    ctx: &ProbeContext,
    stack: u8,
    scratch: &mut StackValue,
    mut window: Option<&mut StackWindow>,
) -> u64 {
    let wants_caller = stack & STACK_CALLER_FIXUP != 0;
    let go = window.is_some();
    let own_walk = go && stack & STACK_OWN_WALK != 0;
    let len = match window.as_deref_mut() {
        Some(window) if own_walk => {
            walk_frame_pointers(ctx, &mut scratch.frames, &mut scratch.caller, window)
        }
        _ => kernel_walk(ctx, &mut scratch.frames),
    };
    if len == 0 {
        bump(Counter::StackLost);
        return 0;
    }
    if !wants_caller {
        scratch.caller = 0;
    } else if !own_walk {
        // SAFETY: reads user memory through the helper, which handles faults.
        scratch.caller =
            unsafe { bpf_probe_read_user(stack_pointer(ctx) as *const u64) }.unwrap_or(0);
    }
    scratch.py_len = if !go && stack & STACK_PYTHON != 0 {
        crate::python::walk(scratch)
    } else {
        0
    };
    let len = if scratch.py_len > 0 {
        // With Python frames, keep only the native frames known to be right: the probed
        // instruction and its caller (the interpreter is built without frame pointers, so the
        // walk's deeper frames are whatever its registers held, and multiplied the number of
        // distinct stacks by thousands).
        let reliable = if scratch.caller != 0 { 1 } else { 2 };
        len.min(reliable)
    } else {
        len
    };
    scratch.len = len;
    let hash = hash(scratch, len);
    if window.as_deref().is_some_and(|window| window.stored(hash)) {
        return hash;
    }
    // SAFETY: the value is only tested for presence.
    if unsafe { STACKS.get(&hash) }.is_none()
        && STACKS.insert(&hash, &*scratch, u64::from(BPF_NOEXIST)).is_err()
        // SAFETY: as above; another CPU may have stored the same stack meanwhile.
        && unsafe { STACKS.get(&hash) }.is_none()
    {
        // The map is full: this stack's frames cannot be kept.
        bump(Counter::StackLost);
        return 0;
    }
    if let Some(window) = window {
        window.remember_stored(hash);
    }
    hash
}

/// FNV-1a over the frames (words, not bytes: one multiply per frame), the caller fixup and the
/// Python frames, so one native path reached from different Python code is stored once per
/// Python stack. Never 0, which means "no stack".
#[inline(always)]
fn hash(stack: &StackValue, len: u32) -> u64 {
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for i in 0..MAX_STACK_FRAMES as usize {
        if i >= len as usize {
            break;
        }
        hash = (hash ^ stack.frames[i]).wrapping_mul(PRIME);
    }
    hash = (hash ^ stack.caller).wrapping_mul(PRIME);
    for i in 0..MAX_PY_FRAMES as usize {
        if i >= stack.py_len as usize {
            break;
        }
        let frame = stack.py_frames[i];
        hash = (hash ^ frame.code).wrapping_mul(PRIME);
        hash = (hash ^ u64::from(frame.instr)).wrapping_mul(PRIME);
    }
    if hash == 0 { 1 } else { hash }
}

/// The kernel's frame-pointer walk (`bpf_get_stack`), which also puts back the return addresses
/// that pending uretprobes replaced. Returns the frames written.
#[inline(always)]
fn kernel_walk(ctx: &ProbeContext, frames: &mut Frames) -> u32 {
    let size = core::mem::size_of_val(frames) as u32;
    // SAFETY: the helper writes at most `size` bytes into `frames`.
    let written = unsafe {
        generated::bpf_get_stack(
            ctx.as_ptr(),
            frames.as_mut_ptr().cast(),
            size,
            u64::from(BPF_F_USER_STACK),
        )
    };
    if written <= 0 {
        0
    } else {
        (written as u32 / 8).min(MAX_STACK_FRAMES)
    }
}

/// The probed instruction, then the return addresses of the frame-pointer chain from RBP, as
/// `bpf_get_stack(BPF_F_USER_STACK)` gives them: the walk ends where a frame record cannot be
/// read (a null RBP ends Go's chains) or `frames` is full. Returns the frames written; sets
/// `caller` to the return address at `[rsp]`.
///
/// Each read of user memory costs ~130–180 ns here plus a little per byte, and that is what the
/// kernel's walk pays per frame. So this walk copies a stretch of stack at once (from RSP, then
/// wherever a record lies outside the copy: goroutine stacks sit far from the threads' system
/// stacks, and a large frame can put the next record beyond the first copy) and follows the
/// chain inside.
#[inline(always)]
fn walk_frame_pointers(
    ctx: &ProbeContext,
    frames: &mut Frames,
    caller: &mut u64,
    window: &mut StackWindow,
) -> u32 {
    // SAFETY: as in `regs::read`.
    let (ip, fp, sp) = unsafe { ((*ctx.regs).rip, (*ctx.regs).rbp, (*ctx.regs).rsp) };
    frames[0] = ip;
    *caller = if window.copy_from(sp, first_copy_bytes(sp, fp)) {
        window.pick_words();
        window.words[0]
    } else {
        // SAFETY: reads user memory through the helper, which handles faults.
        unsafe { bpf_probe_read_user(sp as *const u64) }.unwrap_or(0)
    };
    let mut walk = Walk {
        frames: frames as *mut Frames,
        window: window as *mut StackWindow,
        fp,
        len: 1,
    };
    // SAFETY: `walk_step` is a program function taking `walk`, which outlives the call.
    unsafe {
        generated::bpf_loop(
            MAX_STACK_FRAMES - 1,
            walk_step as *mut c_void,
            (&raw mut walk).cast(),
            0,
        );
    }
    walk.len as u32
}

/// A walk in progress, on the program's stack, for [`walk_step`].
#[repr(C)]
struct Walk {
    frames: *mut Frames,
    /// The thread's copy of user stack.
    window: *mut StackWindow,
    /// The next frame record's address (RBP of the frame whose return address is next).
    fp: u64,
    /// Frames written.
    len: u64,
}

/// One frame of [`walk_frame_pointers`]: reads the record at `walk.fp` into frame `index + 1`.
/// Returns 1 to stop the loop.
///
/// A `bpf_loop` callback rather than a bounded loop, which the verifier follows once per
/// iteration: `go_alloc_enter` loaded in ~7,900 verifier steps with it, ~69,000 with the loop
/// (before the copy sizes depended on the stack's bounds, which made it ~24,000).
extern "C" fn walk_step(index: u64, walk: *mut c_void) -> i64 {
    // SAFETY: `bpf_loop` passes `walk_frame_pointers`'s `Walk`.
    let walk = unsafe { &mut *walk.cast::<Walk>() };
    // SAFETY: the thread's value, alive for the program run and used by nothing else.
    let window = unsafe { &mut *walk.window };
    let fp = walk.fp;
    if fp == 0 || (!window.holds_record(fp) && !window.copy_from(fp, COPY_BYTES)) {
        return 1;
    }
    // A frame record: the caller's RBP, then the return address.
    let i = (fp.wrapping_sub(window.base()) / 8) as usize & (STACK_WINDOW_WORDS - 1);
    let n = (index as usize + 1) & (MAX_STACK_FRAMES as usize - 1);
    // SAFETY: `frames` is the thread's scratch value, alive for the program run.
    unsafe { (*walk.frames)[n] = window.words[i + 1] };
    walk.fp = window.words[i];
    walk.len = n as u64 + 1;
    0
}

/// 8-byte words of user stack a [`StackWindow`] holds: one page.
const STACK_WINDOW_WORDS: usize = 512;

/// Bytes copied from RSP, where a walk starts: through the first frame record (at RBP, which
/// the registers give without a read), and at least [`MIN_FIRST_COPY_BYTES`] for the few
/// small frames above it. Every byte copied costs twice: in the copy, and in the traced
/// program's own data that the copy evicts from the cache. The second cost shows in the traced
/// program's CPU time, not in the eBPF program's run time (`bpf_stats`): on Go churn, copying
/// 1 KiB here instead of a page saved ~40 ns of program time but 154–233 ns of the process's
/// CPU per allocation (docs/benchmarks.md, "Go's stacks").
#[inline(always)]
fn first_copy_bytes(sp: u64, fp: u64) -> u32 {
    if fp <= sp {
        return MIN_FIRST_COPY_BYTES;
    }
    (fp - sp + 16).clamp(u64::from(MIN_FIRST_COPY_BYTES), u64::from(COPY_BYTES)) as u32
}

/// See [`first_copy_bytes`].
const MIN_FIRST_COPY_BYTES: u32 = 512;

/// Bytes copied where a frame record lies outside the copy: the rest of the chain, of unknown
/// depth, so a page (a deep stack copied 1 KiB at a time would pay a read's ~130–180 ns many
/// times), but never past the top of the goroutine's stack (`StackWindow::bounds`), where the
/// chain ends.
const COPY_BYTES: u32 = (STACK_WINDOW_WORDS * 8) as u32;

/// A thread's copy of a stretch of its user stack.
///
/// `base` and `copied` are always loaded from the map value, never carried in registers by the
/// compiler (hence the volatile accesses): the verifier does not track map memory, so each step
/// of the walk starts from the same state as far as it can see, and it stops checking soon.
#[repr(C)]
pub struct StackWindow {
    /// The stack the walk started on: no copy from inside it goes past its top.
    bounds: GoStackBounds,
    /// The user address `words` were copied from.
    base: u64,
    /// Bytes of `words` copied; 0 for none.
    copied: u64,
    /// [`Pick`]: what the probe wants from the first copy, and what it found there.
    pick: [u64; 2],
    picked: [u64; 2],
    picked_found: u64,
    /// Two words more than the window, so that a record read at the last index stays inside
    /// the value as the verifier sees it (the compiler folds the word index back into a byte
    /// offset whose low bits the verifier does not know to be 0).
    words: [u64; STACK_WINDOW_WORDS + 2],
    /// Keys of stacks known to be in `STACKS`, each at its low bits: nothing removes a stack
    /// from that map, so a key seen there once needs no lookup again (a hash-map lookup costs
    /// ~30 ns a hit, against an indexed load; Go churn repeats a few hundred stacks).
    stored: [u64; STORED_KEYS],
}

/// See [`StackWindow::stored`]: a power of two.
const STORED_KEYS: usize = 64;

/// What Go's probes walk a stack with: the stack being assembled and the copy of user stack it
/// is walked over ([`GoStackBuffer`] says whose).
#[repr(C)]
pub struct GoStack {
    scratch: StackValue,
    window: StackWindow,
}

/// A CPU's [`GoStack`] and whether a program run has it.
#[repr(C)]
pub struct CpuGoStack {
    busy: u64,
    stack: GoStack,
}

#[map]
static GO_STACK_CPU: PerCpuArray<CpuGoStack> = PerCpuArray::with_max_entries(1, 0);

/// The thread's [`GoStack`], for a walk that finds its CPU's taken. Not in `THREADS`, whose
/// values every traced thread gets: only a Go thread whose walk once found its CPU's buffer
/// taken (it preempted another walk) carries one.
#[unsafe(link_section = ".maps")]
#[unsafe(export_name = "GO_STACKS")]
static GO_STACKS: TaskStorage<GoStack> = TaskStorage::new();

impl StackWindow {
    /// Whether `key` is known to be in `STACKS` (see [`StackWindow::stored`]).
    #[inline(always)]
    fn stored(&self, key: u64) -> bool {
        self.stored[key as usize & (STORED_KEYS - 1)] == key
    }

    #[inline(always)]
    fn remember_stored(&mut self, key: u64) {
        self.stored[key as usize & (STORED_KEYS - 1)] = key;
    }

    #[inline(always)]
    fn base(&self) -> u64 {
        // SAFETY: a field of the map value.
        unsafe { core::ptr::read_volatile(&self.base) }
    }

    #[inline(always)]
    fn bounds(&self) -> GoStackBounds {
        // SAFETY: fields of the map value.
        unsafe {
            GoStackBounds {
                lo: core::ptr::read_volatile(&self.bounds.lo),
                hi: core::ptr::read_volatile(&self.bounds.hi),
            }
        }
    }

    #[inline(always)]
    fn set_bounds(&mut self, bounds: GoStackBounds) {
        // SAFETY: fields of the map value.
        unsafe {
            core::ptr::write_volatile(&mut self.bounds.lo, bounds.lo);
            core::ptr::write_volatile(&mut self.bounds.hi, bounds.hi);
        }
    }

    #[inline(always)]
    fn set_pick(&mut self, offsets: [u64; 2]) {
        // SAFETY: fields of the map value.
        unsafe {
            core::ptr::write_volatile(&mut self.pick[0], offsets[0]);
            core::ptr::write_volatile(&mut self.pick[1], offsets[1]);
            core::ptr::write_volatile(&mut self.picked_found, 0);
        }
    }

    /// After the first copy (from RSP): the words [`Pick`] asked for that it holds.
    #[inline(always)]
    fn pick_words(&mut self) {
        // SAFETY: fields of the map value.
        let copied = unsafe { core::ptr::read_volatile(&self.copied) };
        let mut found = 0;
        for j in 0..2 {
            // SAFETY: as above.
            let offset = unsafe { core::ptr::read_volatile(&self.pick[j]) };
            if offset % 8 == 0 && offset < copied && copied - offset >= 8 {
                let i = (offset / 8) as usize & (STACK_WINDOW_WORDS - 1);
                // SAFETY: as above.
                unsafe { core::ptr::write_volatile(&mut self.picked[j], self.words[i]) };
                found |= 1 << j;
            }
        }
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(&mut self.picked_found, found) };
    }

    #[inline(always)]
    fn take_picked(&self, pick: &mut Pick) {
        // SAFETY: fields of the map value.
        unsafe {
            pick.found = core::ptr::read_volatile(&self.picked_found);
            pick.values = [
                core::ptr::read_volatile(&self.picked[0]),
                core::ptr::read_volatile(&self.picked[1]),
            ];
        }
    }

    /// `bytes`, or fewer where the copy from `addr` would pass the top of the stack it is on
    /// (but at least a frame record).
    #[inline(always)]
    fn bounded(&self, addr: u64, bytes: u32) -> u32 {
        let bounds = self.bounds();
        if bounds.holds(addr) {
            (bounds.hi - addr).min(u64::from(bytes)).max(16) as u32
        } else {
            bytes
        }
    }

    /// Whether the copy holds the 16-byte record at `fp`, at a word boundary.
    #[inline(always)]
    fn holds_record(&self, fp: u64) -> bool {
        // SAFETY: a field of the map value.
        let copied = unsafe { core::ptr::read_volatile(&self.copied) };
        let offset = fp.wrapping_sub(self.base());
        offset % 8 == 0 && offset < copied && copied - offset >= 16
    }

    /// Copies `bytes` of user memory from `addr` (fewer at the top of the walk's stack) or,
    /// where that would cross the end of a mapping (a thread's stack near its top), the rest of
    /// `addr`'s page, at least a frame record. Returns whether a frame record at `addr` could be
    /// copied.
    #[inline(always)]
    fn copy_from(&mut self, addr: u64, bytes: u32) -> bool {
        const PAGE: u64 = 4096;
        const _: () = assert!(COPY_BYTES as u64 == PAGE && MIN_FIRST_COPY_BYTES <= COPY_BYTES);
        let bytes = self.bounded(addr, bytes).min(COPY_BYTES);
        let dst = self.words.as_mut_ptr().cast();
        // SAFETY: the helper writes at most `bytes` bytes into the window and handles faults.
        let copied = if unsafe { generated::bpf_probe_read_user(dst, bytes, addr as *const _) } == 0
        {
            u64::from(bytes)
        } else {
            let rest = (PAGE - (addr & (PAGE - 1))).min(u64::from(bytes)).max(16);
            // SAFETY: as above; `rest` is at most `bytes`, within the window.
            if unsafe { generated::bpf_probe_read_user(dst, rest as u32, addr as *const _) } == 0 {
                rest
            } else {
                0
            }
        };
        // SAFETY: fields of the map value.
        unsafe {
            core::ptr::write_volatile(&mut self.base, addr);
            core::ptr::write_volatile(&mut self.copied, copied);
        }
        copied != 0
    }
}
