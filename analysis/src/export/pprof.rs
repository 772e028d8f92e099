//! pprof export: `profile.proto` (github.com/google/pprof/proto/profile.proto) messages,
//! written by hand as prost structs (the schema is small and stable; generating them would need
//! protoc at build time), encoded and gzipped as `go tool pprof` reads them.
//!
//! Sample types, all exact (period 1): `alloc_objects`/`count`, `alloc_space`/`bytes`,
//! `inuse_objects`/`count`, `inuse_space`/`bytes` (live at the end), `peak_inuse_objects`/
//! `count`, `peak_inuse_space`/`bytes` (live at the live-bytes peak). The default is
//! `alloc_space`; pick another with `go tool pprof -sample_index=peak_inuse_space`.

use std::io::Write;

use flate2::{Compression, write::GzEncoder};
use prost::Message;
use rustc_hash::FxHashMap;

use super::{NamedProfile, profile::Measure};

#[derive(Clone, PartialEq, Message)]
pub struct Profile {
    #[prost(message, repeated, tag = "1")]
    pub sample_type: Vec<ValueType>,
    #[prost(message, repeated, tag = "2")]
    pub sample: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub mapping: Vec<Mapping>,
    #[prost(message, repeated, tag = "4")]
    pub location: Vec<Location>,
    #[prost(message, repeated, tag = "5")]
    pub function: Vec<Function>,
    #[prost(string, repeated, tag = "6")]
    pub string_table: Vec<String>,
    #[prost(int64, tag = "7")]
    pub drop_frames: i64,
    #[prost(int64, tag = "8")]
    pub keep_frames: i64,
    #[prost(int64, tag = "9")]
    pub time_nanos: i64,
    #[prost(int64, tag = "10")]
    pub duration_nanos: i64,
    #[prost(message, optional, tag = "11")]
    pub period_type: Option<ValueType>,
    #[prost(int64, tag = "12")]
    pub period: i64,
    #[prost(int64, repeated, tag = "13")]
    pub comment: Vec<i64>,
    #[prost(int64, tag = "14")]
    pub default_sample_type: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct ValueType {
    #[prost(int64, tag = "1")]
    pub r#type: i64,
    #[prost(int64, tag = "2")]
    pub unit: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    /// Leaf first.
    #[prost(uint64, repeated, tag = "1")]
    pub location_id: Vec<u64>,
    #[prost(int64, repeated, tag = "2")]
    pub value: Vec<i64>,
    #[prost(message, repeated, tag = "3")]
    pub label: Vec<Label>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(int64, tag = "1")]
    pub key: i64,
    #[prost(int64, tag = "2")]
    pub str: i64,
    #[prost(int64, tag = "3")]
    pub num: i64,
    #[prost(int64, tag = "4")]
    pub num_unit: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Mapping {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub memory_start: u64,
    #[prost(uint64, tag = "3")]
    pub memory_limit: u64,
    #[prost(uint64, tag = "4")]
    pub file_offset: u64,
    #[prost(int64, tag = "5")]
    pub filename: i64,
    #[prost(int64, tag = "6")]
    pub build_id: i64,
    #[prost(bool, tag = "7")]
    pub has_functions: bool,
    #[prost(bool, tag = "8")]
    pub has_filenames: bool,
    #[prost(bool, tag = "9")]
    pub has_line_numbers: bool,
    #[prost(bool, tag = "10")]
    pub has_inline_frames: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct Location {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(uint64, tag = "2")]
    pub mapping_id: u64,
    #[prost(uint64, tag = "3")]
    pub address: u64,
    /// Innermost first: the last entry is the function the others were inlined into.
    #[prost(message, repeated, tag = "4")]
    pub line: Vec<Line>,
    #[prost(bool, tag = "5")]
    pub is_folded: bool,
}

#[derive(Clone, PartialEq, Message)]
pub struct Line {
    #[prost(uint64, tag = "1")]
    pub function_id: u64,
    #[prost(int64, tag = "2")]
    pub line: i64,
    #[prost(int64, tag = "3")]
    pub column: i64,
}

#[derive(Clone, PartialEq, Message)]
pub struct Function {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    #[prost(int64, tag = "2")]
    pub name: i64,
    #[prost(int64, tag = "3")]
    pub system_name: i64,
    #[prost(int64, tag = "4")]
    pub filename: i64,
    #[prost(int64, tag = "5")]
    pub start_line: i64,
}

/// The string table: index 0 is the empty string, as the format requires.
#[derive(Default)]
struct Strings {
    index: FxHashMap<String, i64>,
    table: Vec<String>,
}

impl Strings {
    fn new() -> Strings {
        let mut s = Strings::default();
        s.id("");
        s
    }

    fn id(&mut self, value: &str) -> i64 {
        if let Some(&id) = self.index.get(value) {
            return id;
        }
        let id = self.table.len() as i64;
        self.index.insert(value.to_owned(), id);
        self.table.push(value.to_owned());
        id
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Builds the profile message for `named`.
pub fn profile(named: &NamedProfile) -> Profile {
    let mut strings = Strings::new();
    let sample_type: Vec<ValueType> = Measure::ALL
        .iter()
        .map(|m| ValueType {
            r#type: strings.id(m.name()),
            unit: strings.id(m.unit()),
        })
        .collect();
    let mut mappings: Vec<Mapping> = Vec::new();
    let mut mapping_ids: FxHashMap<usize, u64> = FxHashMap::default();
    let mut functions: Vec<Function> = Vec::new();
    let mut function_ids: FxHashMap<(String, Option<String>), u64> = FxHashMap::default();
    let mut locations: Vec<Location> = Vec::new();
    let mut location_ids: FxHashMap<(u32, u64, bool), u64> = FxHashMap::default();
    let mut samples = Vec::with_capacity(named.profile.samples.len());
    let pid_key = strings.id("pid");
    // Per mapping: has functions, file names, line numbers, inlined frames.
    let mut flags: FxHashMap<u64, (bool, bool, bool, bool)> = FxHashMap::default();
    let mut add_mapping = |strings: &mut Strings, module: usize| -> u64 {
        *mapping_ids.entry(module).or_insert_with(|| {
            let m = named.modules.module(module);
            let id = mappings.len() as u64 + 1;
            mappings.push(Mapping {
                id,
                memory_start: m.start,
                memory_limit: m.end,
                file_offset: m.file_offset,
                filename: strings.id(&m.path),
                build_id: m.build_id.as_deref().map_or(0, |b| strings.id(b)),
                ..Mapping::default()
            });
            id
        })
    };
    // pprof takes the first mapping for the main binary (its "File:" line).
    if let Some(exe) = named
        .modules
        .modules()
        .iter()
        .position(|m| !named.profile.exe.is_empty() && m.path == named.profile.exe)
    {
        add_mapping(&mut strings, exe);
    }

    let mut function_id = |strings: &mut Strings, name: &str, file: Option<&str>| -> u64 {
        let key = (name.to_owned(), file.map(str::to_owned));
        if let Some(&id) = function_ids.get(&key) {
            return id;
        }
        let id = functions.len() as u64 + 1;
        let name_id = strings.id(name);
        functions.push(Function {
            id,
            name: name_id,
            system_name: name_id,
            filename: file.map_or(0, |f| strings.id(f)),
            start_line: 0,
        });
        function_ids.insert(key, id);
        id
    };

    for sample in &named.profile.samples {
        let mut location_id = Vec::new();
        match sample.stack_id.and_then(|id| named.frames.addresses(id)) {
            Some(addresses) => {
                for (i, &address) in addresses.iter().enumerate() {
                    let key = (sample.pid, address, i > 0);
                    if let Some(&id) = location_ids.get(&key) {
                        location_id.push(id);
                        continue;
                    }
                    let id = locations.len() as u64 + 1;
                    let lookup = address.saturating_sub(u64::from(i > 0));
                    let mapping_id = named
                        .modules
                        .lookup(sample.pid, lookup)
                        .map_or(0, |(module, _)| add_mapping(&mut strings, module));
                    let frames = named.frames.address(sample.pid, address, i > 0);
                    let mut line = Vec::new();
                    for frame in frames.iter().filter(|f| f.function.is_some()) {
                        let name = frame.function_or_address();
                        let fid = function_id(&mut strings, &name, frame.file.as_deref());
                        line.push(Line {
                            function_id: fid,
                            line: frame.line.map_or(0, i64::from),
                            column: 0,
                        });
                    }
                    if line.is_empty() {
                        // No symbol: a function named after the module and offset keeps the
                        // frame readable in pprof, which would otherwise show a bare address.
                        let name = frames
                            .first()
                            .map_or_else(|| format!("{address:#x}"), |f| f.label());
                        let fid = function_id(&mut strings, &name, None);
                        line.push(Line {
                            function_id: fid,
                            line: 0,
                            column: 0,
                        });
                    } else {
                        let f = flags.entry(mapping_id).or_default();
                        f.0 = true;
                        f.1 |= frames.iter().any(|f| f.file.is_some());
                        f.2 |= frames.iter().any(|f| f.line.is_some());
                        f.3 |= frames.len() > 1;
                    }
                    locations.push(Location {
                        id,
                        mapping_id,
                        address,
                        line,
                        is_folded: false,
                    });
                    location_ids.insert(key, id);
                    location_id.push(id);
                }
            }
            None => {
                let key = (sample.pid, u64::MAX, false);
                let id = *location_ids.entry(key).or_insert_with(|| {
                    let id = locations.len() as u64 + 1;
                    let fid = function_id(&mut strings, super::NO_STACK_FRAME, None);
                    locations.push(Location {
                        id,
                        line: vec![Line {
                            function_id: fid,
                            line: 0,
                            column: 0,
                        }],
                        ..Location::default()
                    });
                    id
                });
                location_id.push(id);
            }
        }
        samples.push(Sample {
            location_id,
            value: Measure::ALL
                .iter()
                .map(|m| clamp(m.of(&sample.values)))
                .collect(),
            label: vec![Label {
                key: pid_key,
                num: i64::from(sample.pid),
                ..Label::default()
            }],
        });
    }
    for m in &mut mappings {
        if let Some(&(functions, files, lines, inline)) = flags.get(&m.id) {
            (
                m.has_functions,
                m.has_filenames,
                m.has_line_numbers,
                m.has_inline_frames,
            ) = (functions, files, lines, inline);
        }
    }
    let comment = vec![strings.id(&format!(
        "alloctrace {}: exact allocation profile (every call traced); peak_inuse_* is the composition at the live-bytes peak ({} bytes)",
        env!("CARGO_PKG_VERSION"),
        named.profile.peak_live_bytes
    ))];
    let period_type = Some(ValueType {
        r#type: strings.id("space"),
        unit: strings.id("bytes"),
    });
    let default_sample_type = strings.id(Measure::AllocSpace.name());
    Profile {
        sample_type,
        sample: samples,
        mapping: mappings,
        location: locations,
        function: functions,
        string_table: strings.table,
        drop_frames: 0,
        keep_frames: 0,
        time_nanos: named.profile.realtime_start_ns.map_or(0, clamp),
        duration_nanos: clamp(named.profile.duration_ns),
        period_type,
        period: 1,
        comment,
        default_sample_type,
    }
}

/// The gzipped encoding of `profile`, as `go tool pprof` reads it.
pub fn write_gzipped(profile: &Profile, out: &mut dyn Write) -> std::io::Result<()> {
    let mut gz = GzEncoder::new(out, Compression::default());
    gz.write_all(&profile.encode_to_vec())?;
    gz.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::read::GzDecoder;

    use super::*;

    /// Check that a profile survives encoding, gzip and decoding unchanged, with the string
    /// table starting with "" and packed repeated fields read back.
    #[test]
    fn encoding_round_trip() {
        let mut strings = Strings::new();
        let profile = Profile {
            sample_type: vec![ValueType {
                r#type: strings.id("alloc_space"),
                unit: strings.id("bytes"),
            }],
            sample: vec![Sample {
                location_id: vec![1, 2],
                value: vec![4096],
                label: vec![],
            }],
            mapping: vec![Mapping {
                id: 1,
                memory_start: 0x1000,
                memory_limit: 0x2000,
                filename: strings.id("/bin/prog"),
                has_functions: true,
                ..Mapping::default()
            }],
            location: vec![
                Location {
                    id: 1,
                    mapping_id: 1,
                    address: 0x1234,
                    line: vec![Line {
                        function_id: 1,
                        line: 12,
                        column: 0,
                    }],
                    is_folded: false,
                },
                Location {
                    id: 2,
                    mapping_id: 1,
                    address: 0x1300,
                    ..Location::default()
                },
            ],
            function: vec![Function {
                id: 1,
                name: strings.id("make_a"),
                ..Function::default()
            }],
            string_table: std::mem::take(&mut strings.table),
            period: 1,
            ..Profile::default()
        };
        assert_eq!(profile.string_table[0], "");
        let mut gz = Vec::new();
        write_gzipped(&profile, &mut gz).unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        let mut raw = Vec::new();
        GzDecoder::new(&gz[..]).read_to_end(&mut raw).unwrap();
        assert_eq!(Profile::decode(&raw[..]).unwrap(), profile);
    }
}
