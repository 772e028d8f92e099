//! `binary-trees` (Benchmarks Game rules): every node is its own allocation; depth = size.

use bumpalo::Bump;

use crate::{Config, Report, heap::ChunkStats, rng};

pub const MIN_DEPTH: u32 = 4;

/// 16 bytes: two nullable owning pointers.
struct Node {
    left: Option<Box<Node>>,
    right: Option<Box<Node>>,
}

impl Node {
    /// A complete tree of `depth` levels below the root: 2^(depth+1) - 1 `Box::new(Node)` calls.
    fn bottom_up(depth: u32) -> Box<Node> {
        if depth == 0 {
            return Box::new(Node {
                left: None,
                right: None,
            });
        }
        let left = Self::bottom_up(depth - 1);
        let right = Self::bottom_up(depth - 1);
        Box::new(Node {
            left: Some(left),
            right: Some(right),
        })
    }

    fn check(&self) -> u64 {
        1 + self.left.as_ref().map_or(0, |n| n.check())
            + self.right.as_ref().map_or(0, |n| n.check())
    }
}

/// The same tree in a bumpalo arena.
struct ArenaNode<'a> {
    left: Option<&'a ArenaNode<'a>>,
    right: Option<&'a ArenaNode<'a>>,
}

impl<'a> ArenaNode<'a> {
    fn bottom_up(bump: &'a Bump, depth: u32) -> &'a ArenaNode<'a> {
        if depth == 0 {
            return bump.alloc(ArenaNode {
                left: None,
                right: None,
            });
        }
        let left = Self::bottom_up(bump, depth - 1);
        let right = Self::bottom_up(bump, depth - 1);
        bump.alloc(ArenaNode {
            left: Some(left),
            right: Some(right),
        })
    }

    fn check(&self) -> u64 {
        1 + self.left.map_or(0, |n| n.check()) + self.right.map_or(0, |n| n.check())
    }
}

/// One tree at a time: builds, checks and frees trees; returns the nodes it built.
trait TreeMaker {
    fn make_check_free(&mut self, depth: u32) -> u64;
}

struct Boxed;

impl TreeMaker for Boxed {
    fn make_check_free(&mut self, depth: u32) -> u64 {
        Node::bottom_up(depth).check()
    }
}

#[derive(Default)]
struct Arena {
    bump: Bump,
    stats: ChunkStats,
}

impl TreeMaker for Arena {
    fn make_check_free(&mut self, depth: u32) -> u64 {
        let nodes = ArenaNode::bottom_up(&self.bump, depth).check();
        self.stats.before_reset(&mut self.bump);
        self.bump.reset();
        self.stats.after_reset(&mut self.bump);
        nodes
    }
}

#[derive(Clone, Copy, Default)]
struct WorkerResult {
    trees: u64,
    nodes: u64,
}

/// The iterations `i` with `i % threads == worker` of every depth.
fn worker(
    maker: &mut impl TreeMaker,
    max_depth: u32,
    threads: usize,
    index: usize,
) -> WorkerResult {
    let mut result = WorkerResult::default();
    for depth in (MIN_DEPTH..=max_depth).step_by(2) {
        let iterations = 1u64 << (max_depth - depth + MIN_DEPTH);
        for _ in 0..rng::share(iterations, threads, index) {
            result.nodes += maker.make_check_free(depth);
            result.trees += 1;
        }
    }
    result
}

fn run_with<M: TreeMaker + Send>(
    config: &Config,
    max_depth: u32,
    mut new_maker: impl FnMut() -> M,
) -> Vec<(M, WorkerResult)> {
    let threads = config.threads;
    if threads == 1 {
        let mut maker = new_maker();
                let result = worker(&mut maker, max_depth, 1, 0);
        // Room for two, so this bookkeeping allocation is not node-sized (16 bytes): a trace
        // then counts exactly the program's nodes by size (tracer/tests/suite/targets.rs).
        let mut results = Vec::with_capacity(2);
        results.push((maker, result));
        return results;
    }
    let makers: Vec<M> = (0..threads).map(|_| new_maker()).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = makers
            .into_iter()
            .enumerate()
            .map(|(i, mut maker)| {
                scope.spawn(move || {
                    let result = worker(&mut maker, max_depth, threads, i);
                    (maker, result)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

pub fn run(config: &Config) -> Report {
    let max_depth = (MIN_DEPTH + 2).max(config.size as u32);
    let (mut trees, mut nodes) = (0u64, 0u64);
    let long_lived_check;
    let mut upstream = None;
    if config.arena {
        let mut main = Arena::default();
        nodes += main.make_check_free(max_depth + 1); // stretch tree
        let mut long_lived_bump = Bump::new();
        let long_lived = ArenaNode::bottom_up(&long_lived_bump, max_depth);
        let results = run_with(config, max_depth, Arena::default);
        long_lived_check = long_lived.check();
        let mut long_stats = ChunkStats::default();
        long_stats.before_reset(&mut long_lived_bump); // counts its chunks; dropped below
        let (mut allocs, mut bytes) = (
            main.stats.chunks + long_stats.chunks,
            main.stats.bytes + long_stats.bytes,
        );
        for (maker, result) in results {
            trees += result.trees;
            nodes += result.nodes;
            allocs += maker.stats.chunks;
            bytes += maker.stats.bytes;
        }
        upstream = Some((allocs, bytes));
    } else {
        nodes += Boxed.make_check_free(max_depth + 1); // stretch tree
        let long_lived = Node::bottom_up(max_depth);
        for (_, result) in run_with(config, max_depth, || Boxed) {
            trees += result.trees;
            nodes += result.nodes;
        }
        long_lived_check = long_lived.check();
    }
    trees += 2; // stretch and long-lived
    nodes += long_lived_check;
    let node_size = std::mem::size_of::<Node>() as u64;
    let mut report = Report {
        work_units: trees,
        objects: nodes,
        bytes_requested: nodes * node_size,
        extra: Vec::new(),
    }
    .extra("max_depth", u64::from(max_depth))
    .extra("trees", trees)
    .extra("node_size", node_size)
    .extra("long_lived_check", long_lived_check);
    if let Some((allocs, bytes)) = upstream {
        report = report
            .extra("heap_allocs", allocs)
            .extra("heap_bytes", bytes);
    }
    report
}
