//! The alloctrace workload targets in Rust. `targets/README.md` specifies the scenarios; the
//! Go, C++ and Python targets implement the same ones with the same PRNG draws.
//!
//! ```text
//! alloc-rust-<allocator> <scenario> [--size N] [--seed S] [--threads T] [--variant arena]
//! alloc-rust-<allocator> --list [--variant arena]
//! ```
//!
//! On success stdout gets exactly one JSON line: the program's own counters.

pub mod heap;
pub mod rng;
pub mod scenarios;

use std::{fmt::Write as _, time::Instant};

/// The scenarios and their default sizes (each run takes about 1–5 s on the project's machine).
pub const SCENARIOS: [(&str, u64); 6] = [
    ("binary-trees", 18),
    ("churn", 24_000_000),
    ("fragmentation", 10_000_000),
    ("growth", 60_000),
    ("producer-consumer", 5_000_000),
    ("cache", 30_000_000),
];

/// Scenarios an arena cannot serve: objects freed one by one on another thread, or evicted one
/// by one from a long-lived structure.
const ARENA_UNSUPPORTED: [&str; 2] = ["producer-consumer", "cache"];

#[derive(Clone, Debug)]
pub struct Config {
    pub scenario: String,
    pub size: u64,
    pub seed: u64,
    pub threads: usize,
    pub arena: bool,
}

/// A JSON value of the `extra` object.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U64(u64),
    Str(String),
}

/// The counters a scenario reports.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub work_units: u64,
    pub objects: u64,
    pub bytes_requested: u64,
    pub extra: Vec<(&'static str, Value)>,
}

impl Report {
    pub fn extra(mut self, key: &'static str, value: u64) -> Self {
        self.extra.push((key, Value::U64(value)));
        self
    }
}

/// Per-worker counters, summed over the workers at the end.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub work: u64,
    pub objects: u64,
    pub bytes: u64,
    pub payload: u64,
    pub checksum: u64,
    pub draws: u64,
    /// Allocations and bytes the arena took from the global allocator (arena variant only).
    pub upstream: Option<(u64, u64)>,
}

impl Tally {
    /// Counts one data object of `len` bytes (requested bytes = payload bytes in Rust).
    pub fn object(&mut self, len: u64) {
        self.objects += 1;
        self.bytes += len;
        self.payload += len;
    }

    /// Adds the first and last byte of a buffer to the checksum: reads the object, so it cannot
    /// be optimised away, and every language computes the same sum.
    pub fn touch(&mut self, buf: &[u8]) {
        if let (Some(first), Some(last)) = (buf.first(), buf.last()) {
            self.checksum += u64::from(*first) + u64::from(*last);
        }
    }

    pub fn sum(tallies: impl IntoIterator<Item = Tally>) -> Tally {
        tallies.into_iter().fold(Tally::default(), |mut acc, t| {
            acc.work += t.work;
            acc.objects += t.objects;
            acc.bytes += t.bytes;
            acc.payload += t.payload;
            acc.checksum += t.checksum;
            acc.draws += t.draws;
            acc.upstream = match (acc.upstream, t.upstream) {
                (Some((a, b)), Some((c, d))) => Some((a + c, b + d)),
                (a, b) => a.or(b),
            };
            acc
        })
    }

    /// The report every buffer scenario starts from.
    pub fn report(self) -> Report {
        let mut report = Report {
            work_units: self.work,
            objects: self.objects,
            bytes_requested: self.bytes,
            extra: Vec::new(),
        }
        .extra("payload_bytes", self.payload)
        .extra("checksum", self.checksum)
        .extra("rng_draws", self.draws);
        if let Some((allocs, bytes)) = self.upstream {
            report = report
                .extra("heap_allocs", allocs)
                .extra("heap_bytes", bytes);
        }
        report
    }
}

fn usage() -> String {
    let names: Vec<&str> = SCENARIOS.iter().map(|(n, _)| *n).collect();
    format!(
        "usage: <program> <scenario> [--size N] [--seed S] [--threads T] [--variant arena]\n       \
         <program> --list [--variant arena]\nscenarios: {}",
        names.join(", ")
    )
}

enum Command {
    Run(Config),
    List { arena: bool },
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let mut scenario = None;
    let (mut size, mut seed, mut threads) = (None, 1u64, 1usize);
    let (mut arena, mut list) = (false, false);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or(format!("{name} needs a value"))
        };
        let number = |name: &str, v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{name}: not a number: {v}"))
        };
        match flag {
            "--size" => size = Some(number("--size", value("--size")?)?),
            "--seed" => seed = number("--seed", value("--seed")?)?,
            "--threads" => threads = number("--threads", value("--threads")?)? as usize,
            "--variant" => match value("--variant")?.as_str() {
                "arena" => arena = true,
                "heap" | "default" => arena = false,
                v => return Err(format!("unknown variant {v:?} (known: arena)")),
            },
            "--list" => list = true,
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s if scenario.is_none() => scenario = Some(s.to_string()),
            s => return Err(format!("unexpected argument {s}")),
        }
    }
    if list {
        return Ok(Command::List { arena });
    }
    let scenario = scenario.ok_or("no scenario given")?;
    let default_size = SCENARIOS
        .iter()
        .find(|(n, _)| *n == scenario)
        .map(|(_, s)| *s)
        .ok_or(format!("unknown scenario {scenario:?}"))?;
    if threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    if arena && ARENA_UNSUPPORTED.contains(&scenario.as_str()) {
        return Err(format!(
            "scenario {scenario} is not supported by the arena variant"
        ));
    }
    Ok(Command::Run(Config {
        scenario,
        size: size.unwrap_or(default_size),
        seed,
        threads,
        arena,
    }))
}

fn variant_name(allocator: &str, arena: bool) -> String {
    if arena {
        format!("{allocator}+arena")
    } else {
        allocator.to_string()
    }
}

/// JSON string literal (the strings here are plain ASCII names, but escape anyway).
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn run(config: &Config) -> Report {
    match config.scenario.as_str() {
        "binary-trees" => scenarios::binary_trees::run(config),
        "churn" => scenarios::churn::run(config),
        "fragmentation" => scenarios::fragmentation::run(config),
        "growth" => scenarios::growth::run(config),
        "producer-consumer" => scenarios::producer_consumer::run(config),
        "cache" => scenarios::cache::run(config),
        other => unreachable!("scenario {other} was validated by parse_args"),
    }
}

/// The whole program: parses the arguments, runs the scenario, prints the JSON line. Returns the
/// exit code (2 for usage errors).
pub fn main(allocator: &str) -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match parse_args(&args) {
        Ok(Command::Run(config)) => config,
        Ok(Command::List { arena }) => {
            let scenarios: Vec<(&str, u64)> = SCENARIOS
                .iter()
                .copied()
                .filter(|(name, _)| !(arena && ARENA_UNSUPPORTED.contains(name)))
                .collect();
            let names: Vec<String> = scenarios.iter().map(|(n, _)| json_str(n)).collect();
            let sizes: Vec<String> = scenarios
                .iter()
                .map(|(n, s)| format!("{}:{s}", json_str(n)))
                .collect();
            println!(
                "{{\"lang\":\"rust\",\"variant\":{},\"toolchain\":{},\"scenarios\":[{}],\"default_sizes\":{{{}}}}}",
                json_str(&variant_name(allocator, arena)),
                json_str(env!("ALLOC_RUSTC_VERSION")),
                names.join(","),
                sizes.join(",")
            );
            return 0;
        }
        Err(message) => {
            if !message.is_empty() {
                eprintln!("error: {message}");
            }
            eprintln!("{}", usage());
            return 2;
        }
    };
    let start = Instant::now();
    let report = run(&config);
    let elapsed_ms = start.elapsed().as_secs_f64() * 1000.0;
    let extra: Vec<String> = report
        .extra
        .iter()
        .map(|(k, v)| match v {
            Value::U64(n) => format!("{}:{n}", json_str(k)),
            Value::Str(s) => format!("{}:{}", json_str(k), json_str(s)),
        })
        .collect();
    println!(
        "{{\"lang\":\"rust\",\"variant\":{},\"toolchain\":{},\"scenario\":{},\"size\":{},\"seed\":{},\"threads\":{},\
         \"work_units\":{},\"objects\":{},\"bytes_requested\":{},\"elapsed_ms\":{elapsed_ms:.1},\"extra\":{{{}}}}}",
        json_str(&variant_name(allocator, config.arena)),
        json_str(env!("ALLOC_RUSTC_VERSION")),
        json_str(&config.scenario),
        config.size,
        config.seed,
        config.threads,
        report.work_units,
        report.objects,
        report.bytes_requested,
        extra.join(",")
    );
    0
}
