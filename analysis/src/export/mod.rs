//! Exports of a trace's allocation stacks to profile viewers: folded stacks (flamegraph.pl,
//! inferno), pprof (`go tool pprof`, pprof UIs) and speedscope JSON.
//!
//! Every export carries the same per-stack measures ([`profile::Measure`]): allocations and
//! bytes allocated, blocks and bytes live at the end, and blocks and bytes live at the
//! live-bytes peak, computed with the reports' replay. Frames come from `frames.parquet`; a
//! trace not yet symbolized is symbolized in memory first (nothing is written to it).
//!
//! ```no_run
//! use analysis::export::{self, Format, Options};
//! let summary = export::export_to_file(
//!     "trace".as_ref(),
//!     &Options { format: Format::Pprof, ..Options::default() },
//!     "profile.pb.gz".as_ref(),
//! )?;
//! println!("{} stacks", summary.samples);
//! # Ok::<(), analysis::export::ExportError>(())
//! ```

pub mod folded;
pub mod pprof;
pub mod profile;
pub mod speedscope;

use std::{
    fs::File,
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use profile::{Measure, StackProfile, StackSample};

use crate::{
    error::AnalysisError,
    symbolize::{self, FrameName, ModuleMap, StackFrames, SymbolizeError, tables},
};

/// The frame that stands for rows recorded without a stack.
pub const NO_STACK_FRAME: &str = "[no stack]";

/// The export formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `a;b;c weight` lines.
    Folded,
    /// gzipped `profile.proto`.
    Pprof,
    /// speedscope JSON.
    Speedscope,
}

impl Format {
    /// The file name used when none is given.
    pub fn default_file_name(self) -> &'static str {
        match self {
            Format::Folded => "profile.folded",
            Format::Pprof => "profile.pb.gz",
            Format::Speedscope => "profile.speedscope.json",
        }
    }
}

/// What to export.
#[derive(Clone, Debug)]
pub struct Options {
    pub format: Format,
    /// The weight of folded lines (pprof and speedscope carry every measure).
    pub measure: Measure,
    /// Folded only: append ` (file:line)` to each frame.
    pub lines: bool,
    /// Where to look for debug files when the trace must be symbolized first.
    pub symbolize: symbolize::Options,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            format: Format::Folded,
            measure: Measure::AllocSpace,
            lines: false,
            symbolize: symbolize::Options::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    #[error(transparent)]
    Trace(#[from] AnalysisError),
    #[error(transparent)]
    Symbolize(#[from] SymbolizeError),
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot serialise the speedscope profile")]
    Json {
        #[source]
        source: serde_json::Error,
    },
}

/// What was exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    /// (pid, stack) pairs with a non-zero measure.
    pub samples: usize,
    /// Whether the trace had to be symbolized in memory (no frames.parquet).
    pub symbolized_now: bool,
    pub bytes_allocated: u64,
}

/// A trace's per-stack measures with the names of their frames.
#[derive(Debug)]
pub struct NamedProfile {
    pub profile: StackProfile,
    pub frames: StackFrames,
    pub modules: ModuleMap,
}

impl NamedProfile {
    /// Replays `dir` and loads (or computes) its frames. The second value tells whether the
    /// frames were computed now because `frames.parquet` did not exist.
    pub fn load(
        dir: &Path,
        options: &symbolize::Options,
    ) -> Result<(NamedProfile, bool), ExportError> {
        let profile = StackProfile::build(dir)?;
        let (frames, now) = match StackFrames::load(dir)? {
            Some(frames) => (frames, false),
            None => {
                let (rows, _) = symbolize::symbolize(dir, options)?;
                let frames = StackFrames::new(tables::read_stacks(dir)?, &rows)
                    .with_python(tables::read_python_stacks(dir)?);
                (frames, true)
            }
        };
        let modules = ModuleMap::new(tables::read_modules(dir)?);
        Ok((
            NamedProfile {
                profile,
                frames,
                modules,
            },
            now,
        ))
    }

    /// The frames of `sample`, innermost first (`[no stack]` for rows without one).
    pub fn frame_names(&self, sample: &StackSample) -> Vec<FrameName> {
        sample
            .stack_id
            .and_then(|id| self.frames.stack(Some(sample.pid), id))
            .unwrap_or_else(|| {
                vec![FrameName {
                    function: Some(NO_STACK_FRAME.to_owned()),
                    status: symbolize::Status::Ok,
                    ..FrameName::unknown(0)
                }]
            })
    }
}

/// Writes `named` in `options.format` to `out`; `name` titles the profile where the format
/// has a title.
pub fn write(
    named: &NamedProfile,
    options: &Options,
    name: &str,
    out: &mut dyn Write,
) -> io::Result<()> {
    match options.format {
        Format::Folded => folded::write(named, options.measure, options.lines, out),
        Format::Pprof => pprof::write_gzipped(&pprof::profile(named), out),
        Format::Speedscope => {
            serde_json::to_writer(&mut *out, &speedscope::file(named, name))?;
            out.write_all(b"\n")
        }
    }
}

/// Exports the trace in `dir` to `path` (`-` for stdout).
pub fn export_to_file(
    dir: &Path,
    options: &Options,
    path: &Path,
) -> Result<ExportSummary, ExportError> {
    let (named, symbolized_now) = NamedProfile::load(dir, &options.symbolize)?;
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string());
    let write_error = |source| ExportError::Write {
        path: path.to_owned(),
        source,
    };
    if path == Path::new("-") {
        let stdout = io::stdout();
        let mut out = stdout.lock();
        write(&named, options, &name, &mut out).map_err(write_error)?;
        out.flush().map_err(write_error)?;
    } else {
        let file = File::create(path).map_err(write_error)?;
        let mut out = BufWriter::new(file);
        write(&named, options, &name, &mut out).map_err(write_error)?;
        out.flush().map_err(write_error)?;
    }
    Ok(ExportSummary {
        samples: named.profile.samples.len(),
        symbolized_now,
        bytes_allocated: named.profile.total(Measure::AllocSpace),
    })
}

#[cfg(test)]
mod tests {
    use rustc_hash::FxHashMap;

    use super::{profile::StackValues, *};
    use crate::symbolize::{FrameRow, Module, Status};

    fn row(address: u64, ret: bool, depth: u16, function: Option<&str>, line: u32) -> FrameRow {
        FrameRow {
            pid: 7,
            address,
            return_address: ret,
            depth,
            inlined: false,
            module: Some("/bin/prog".into()),
            build_id: None,
            module_offset: Some(address - 0x1000),
            function: function.map(str::to_owned),
            file: function.map(|_| "/src/prog.c".to_owned()),
            line: function.and_then(|_| (line > 0).then_some(line)),
            column: None,
            status: if function.is_some() {
                Status::Ok
            } else {
                Status::Stripped
            },
        }
    }

    /// Two stacks through main into make_a and make_b, one with an unresolved frame, plus a
    /// sample without a stack.
    fn named() -> NamedProfile {
        let rows = vec![
            row(0x1100, false, 0, Some("malloc"), 0),
            row(0x1200, true, 0, Some("make_a"), 12),
            row(0x1300, true, 0, Some("make_b"), 20),
            row(0x1400, true, 0, Some("main"), 30),
            row(0x1500, true, 0, None, 0),
        ];
        let stacks: FxHashMap<u32, Vec<u64>> = [
            (0, vec![0x1100, 0x1200, 0x1400]),
            (1, vec![0x1100, 0x1300, 0x1400, 0x1500]),
        ]
        .into_iter()
        .collect();
        let values = |alloc_space, peak_space| StackValues {
            alloc_objects: alloc_space / 16,
            alloc_space,
            inuse_objects: 0,
            inuse_space: 0,
            peak_objects: peak_space / 16,
            peak_space,
        };
        NamedProfile {
            profile: StackProfile {
                samples: vec![
                    StackSample {
                        pid: 7,
                        stack_id: None,
                        values: values(16, 0),
                    },
                    StackSample {
                        pid: 7,
                        stack_id: Some(0),
                        values: values(4096, 1024),
                    },
                    StackSample {
                        pid: 7,
                        stack_id: Some(1),
                        values: values(512, 0),
                    },
                ],
                ..StackProfile::default()
            },
            frames: StackFrames::new(stacks, &rows),
            modules: ModuleMap::new(vec![Module {
                pid: 7,
                path: "/bin/prog".into(),
                build_id: Some("ab12".into()),
                start: 0x1000,
                end: 0x2000,
                file_offset: 0,
                perms: "r-xp".into(),
                ts_ns: 0,
            }]),
        }
    }

    /// Check the folded format: outermost frame first, `;`-separated, weight after one space,
    /// unresolved frames as module+offset, rows without a stack under `[no stack]`, zero
    /// weights omitted, and `--lines` adding file:line.
    #[test]
    fn folded_output() {
        let named = named();
        let mut out = Vec::new();
        folded::write(&named, Measure::AllocSpace, false, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[no stack] 16\nmain;make_a;malloc 4096\nprog+0x500;main;make_b;malloc 512\n"
        );
        let peak = folded::lines(&named, Measure::PeakSpace, true);
        assert_eq!(
            peak.into_iter().collect::<Vec<_>>(),
            [(
                "main (prog.c:30);make_a (prog.c:12);malloc (prog.c)".to_owned(),
                1024
            )]
        );
        let counts = folded::lines(&named, Measure::AllocObjects, false);
        assert_eq!(counts["main;make_a;malloc"], 256);
    }

    /// Check the pprof profile of the example: six sample types with alloc_space the default,
    /// leaf-first locations inside the module's mapping, function names and lines, a readable
    /// name for the unresolved frame, and values in sample-type order.
    #[test]
    fn pprof_profile_contents() {
        let p = pprof::profile(&named());
        let s = |i: i64| p.string_table[i as usize].as_str();
        let types: Vec<&str> = p.sample_type.iter().map(|t| s(t.r#type)).collect();
        assert_eq!(
            types,
            [
                "alloc_objects",
                "alloc_space",
                "inuse_objects",
                "inuse_space",
                "peak_inuse_objects",
                "peak_inuse_space"
            ]
        );
        assert_eq!(s(p.default_sample_type), "alloc_space");
        assert_eq!(p.mapping.len(), 1);
        assert_eq!(s(p.mapping[0].filename), "/bin/prog");
        assert_eq!(s(p.mapping[0].build_id), "ab12");
        let sample = &p.sample[1];
        assert_eq!(sample.value, [256, 4096, 0, 0, 64, 1024]);
        let names: Vec<String> = sample
            .location_id
            .iter()
            .map(|id| {
                let loc = &p.location[*id as usize - 1];
                assert!(loc.mapping_id == 1 && (0x1000..0x2000).contains(&loc.address));
                let line = &loc.line[0];
                let f = &p.function[line.function_id as usize - 1];
                format!("{}:{}", s(f.name), line.line)
            })
            .collect();
        assert_eq!(names, ["malloc:0", "make_a:12", "main:30"]);
        let last = p.sample[2].location_id[3];
        let f = p.location[last as usize - 1].line[0].function_id;
        assert_eq!(s(p.function[f as usize - 1].name), "prog+0x500 [stripped]");
        let no_stack = p.sample[0].location_id[0];
        let f = p.location[no_stack as usize - 1].line[0].function_id;
        assert_eq!(s(p.function[f as usize - 1].name), NO_STACK_FRAME);
    }

    /// Check the speedscope document: one sampled profile per measure, stacks outermost first
    /// into shared frames, weights summing to endValue, empty measures with no samples.
    #[test]
    fn speedscope_document() {
        let file = speedscope::file(&named(), "t");
        let json = serde_json::to_value(&file).unwrap();
        assert_eq!(json["$schema"], speedscope::SCHEMA);
        assert_eq!(json["profiles"].as_array().unwrap().len(), 6);
        let bytes = &json["profiles"][0];
        assert_eq!(bytes["type"], "sampled");
        assert_eq!(bytes["unit"], "bytes");
        assert_eq!(bytes["endValue"], 4096 + 512 + 16);
        let frames = &json["shared"]["frames"];
        let stack: Vec<&str> = bytes["samples"][1]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                frames[i.as_u64().unwrap() as usize]["name"]
                    .as_str()
                    .unwrap()
            })
            .collect();
        assert_eq!(stack, ["main", "make_a", "malloc"]);
        assert_eq!(json["profiles"][1]["unit"], "none");
        let live_end = &json["profiles"][2];
        assert_eq!(live_end["samples"].as_array().unwrap().len(), 0);
    }
}
