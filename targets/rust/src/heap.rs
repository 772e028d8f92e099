//! Where the scenarios get their byte buffers: the global allocator (one `Vec<u8>` per object)
//! or a bumpalo arena (a slice in the arena, freed all at once by `reset`).

use std::ops::Deref;

use bumpalo::Bump;

/// A source of byte buffers filled with one byte value.
pub trait BufHeap {
    type Buf<'a>: Deref<Target = [u8]>
    where
        Self: 'a;

    /// One object of `len` bytes, every byte `fill`.
    fn alloc(&self, len: u64, fill: u8) -> Self::Buf<'_>;

    /// Ends a round: the arena frees everything at once; the global heap has nothing to do
    /// (each buffer was freed when it was dropped).
    fn reset(&mut self);

    /// Allocations and bytes that reached the global allocator on the heap's behalf (arena
    /// chunks); `None` when every buffer is its own allocation.
    fn upstream(&mut self) -> Option<(u64, u64)>;
}

/// Each buffer is a `Vec<u8>` of exactly `len` bytes: one `alloc(len, 1)` of the global allocator.
#[derive(Default)]
pub struct GlobalHeap;

impl BufHeap for GlobalHeap {
    type Buf<'a> = Vec<u8>;

    fn alloc(&self, len: u64, fill: u8) -> Vec<u8> {
        vec![fill; len as usize]
    }

    fn reset(&mut self) {}

    fn upstream(&mut self) -> Option<(u64, u64)> {
        None
    }
}

/// A bumpalo arena reset at the end of each round; counts the chunks it took from the global
/// allocator (`reset` keeps the current, largest chunk and frees the others).
#[derive(Default)]
pub struct ArenaHeap {
    pub bump: Bump,
    stats: ChunkStats,
}

impl ArenaHeap {
    /// Resets the arena after the caller dropped every reference into it.
    pub fn reset_bump(bump: &mut Bump, stats: &mut ChunkStats) {
        stats.before_reset(bump);
        bump.reset();
        stats.after_reset(bump);
    }
}

impl BufHeap for ArenaHeap {
    type Buf<'a> = &'a [u8];

    fn alloc(&self, len: u64, fill: u8) -> &[u8] {
        self.bump.alloc_slice_fill_copy(len as usize, fill)
    }

    fn reset(&mut self) {
        Self::reset_bump(&mut self.bump, &mut self.stats);
    }

    fn upstream(&mut self) -> Option<(u64, u64)> {
        self.stats.before_reset(&mut self.bump);
        self.stats.after_reset(&mut self.bump);
        Some((self.stats.chunks, self.stats.bytes))
    }
}

/// Chunk allocations of one `Bump`, counted at each reset: the chunks it holds then, less the one
/// it kept at the previous reset.
#[derive(Default, Debug)]
pub struct ChunkStats {
    pub chunks: u64,
    pub bytes: u64,
    kept_chunks: u64,
    kept_bytes: u64,
}

impl ChunkStats {
    pub fn before_reset(&mut self, bump: &mut Bump) {
        let chunks = bump.iter_allocated_chunks().count() as u64;
        let bytes = bump.allocated_bytes_including_metadata() as u64;
        self.chunks += chunks - self.kept_chunks;
        self.bytes += bytes - self.kept_bytes;
    }

    pub fn after_reset(&mut self, bump: &mut Bump) {
        self.kept_chunks = bump.iter_allocated_chunks().count() as u64;
        self.kept_bytes = bump.allocated_bytes_including_metadata() as u64;
    }
}
