//! speedscope export (<https://www.speedscope.app/file-format-schema.json>): one "sampled"
//! profile per measure (bytes allocated, allocations, live at the end, live at the peak), the
//! frames shared between them.

use rustc_hash::FxHashMap;
use serde::Serialize;

use super::{NamedProfile, profile::Measure};

pub const SCHEMA: &str = "https://www.speedscope.app/file-format-schema.json";

#[derive(Debug, Serialize)]
pub struct File {
    #[serde(rename = "$schema")]
    pub schema: &'static str,
    pub shared: Shared,
    pub profiles: Vec<Profile>,
    pub name: String,
    #[serde(rename = "activeProfileIndex")]
    pub active_profile_index: usize,
    pub exporter: String,
}

#[derive(Debug, Serialize)]
pub struct Shared {
    pub frames: Vec<Frame>,
}

#[derive(Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Frame {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Profile {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: String,
    /// `bytes` or `none` (counts).
    pub unit: &'static str,
    #[serde(rename = "startValue")]
    pub start_value: u64,
    #[serde(rename = "endValue")]
    pub end_value: u64,
    /// Stacks as indices into `shared.frames`, outermost first.
    pub samples: Vec<Vec<usize>>,
    pub weights: Vec<u64>,
}

/// The speedscope document for `named`, titled `name`.
pub fn file(named: &NamedProfile, name: &str) -> File {
    let mut frames: Vec<Frame> = Vec::new();
    // Frames are one per function and file, not per line, so speedscope merges a function's
    // calls into one box.
    let mut index: FxHashMap<(String, Option<String>), usize> = FxHashMap::default();
    let stacks: Vec<Vec<usize>> = named
        .profile
        .samples
        .iter()
        .map(|sample| {
            named
                .frame_names(sample)
                .iter()
                .rev()
                .map(|f| {
                    let key = (f.function_or_address(), f.file.clone());
                    let next = frames.len();
                    *index.entry(key).or_insert_with_key(|(name, file)| {
                        frames.push(Frame {
                            name: name.clone(),
                            file: file.clone(),
                        });
                        next
                    })
                })
                .collect()
        })
        .collect();
    let order = [
        Measure::AllocSpace,
        Measure::AllocObjects,
        Measure::InuseSpace,
        Measure::PeakSpace,
        Measure::InuseObjects,
        Measure::PeakObjects,
    ];
    let profiles = order
        .iter()
        .map(|&measure| {
            let (mut samples, mut weights) = (Vec::new(), Vec::new());
            for (stack, sample) in stacks.iter().zip(&named.profile.samples) {
                let weight = measure.of(&sample.values);
                if weight > 0 {
                    samples.push(stack.clone());
                    weights.push(weight);
                }
            }
            Profile {
                kind: "sampled",
                name: measure.title().to_owned(),
                unit: if measure.unit() == "bytes" {
                    "bytes"
                } else {
                    "none"
                },
                start_value: 0,
                end_value: weights.iter().sum(),
                samples,
                weights,
            }
        })
        .collect();
    File {
        schema: SCHEMA,
        shared: Shared { frames },
        profiles,
        name: name.to_owned(),
        active_profile_index: 0,
        exporter: format!("alloctrace {}", env!("CARGO_PKG_VERSION")),
    }
}
