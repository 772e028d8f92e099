//! The headline figures of one suite run and where each comes from.
//!
//! The suite records each run twice: the full trace (every allocation: patterns, sizes,
//! lifetimes, fragmentation) in the run's directory, and a cheap `--events gc,rss` recording of
//! the same command in its [`LIGHT_DIR`] subdirectory (GC cycles, pauses and resident memory,
//! at a few percent of overhead). Each recording gets its own `summary.json` from `alloctrace
//! report`. Time, GC and resident figures come from the cheap recording; a figure that had to
//! come from the full trace instead (the cheap one is missing or lacks it) is marked `traced`,
//! because tracing every allocation slows each runtime by a different factor.

use std::{fs, path::Path};

use serde_json::Value;

/// The cheap recording's folder inside a run's trace directory.
pub const LIGHT_DIR: &str = "gc-rss";

/// A figure and whether it was measured on the fully traced run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Figure {
    pub value: Option<f64>,
    pub traced: bool,
}

impl Figure {
    /// From the cheap recording when it has the key, else from the full trace (marked traced).
    fn light_first(light: Option<&Value>, full: &Value, key: &str) -> Figure {
        match light.and_then(|l| l[key].as_f64()) {
            Some(v) => Figure {
                value: Some(v),
                traced: false,
            },
            None => Figure {
                value: full[key].as_f64(),
                traced: true,
            },
        }
    }
}

/// Headline figures of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Headline {
    /// Peak resident memory of the process (total RSS), bytes.
    pub peak_resident: Figure,
    /// Heap footprint ÷ live bytes at the live peak, from the full trace (it alone knows the
    /// live bytes).
    pub footprint_over_live: Option<f64>,
    /// Whether that footprint is resident (sampled RSS of the heap) rather than mapped:
    /// summary.json's `footprint_source`.
    pub footprint_resident: bool,
    pub allocs_per_unit: Option<f64>,
    pub bytes_per_unit: Option<f64>,
    pub peak_live: Option<f64>,
    pub gc_cpu_share: Figure,
    pub gc_cpu_share_source: Option<String>,
    pub gc_cycles: Figure,
    pub duration_ns: Figure,
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&fs::read_to_string(path).ok()?).ok()
}

impl Headline {
    /// Reads the run in `dir`; None without the full trace's `summary.json`.
    pub fn read(dir: &Path) -> Option<Headline> {
        let full = read_json(&dir.join("summary.json"))?;
        let light = read_json(&dir.join(LIGHT_DIR).join("summary.json"));
        Some(Headline::from_summaries(&full, light.as_ref()))
    }

    pub fn from_summaries(full: &Value, light: Option<&Value>) -> Headline {
        // A cheap recording without GC cycles has no share to give; the full trace's (taken
        // under other timing) would only look like one.
        let light_gc_free = light.is_some_and(|l| l["gc_cycles"].as_f64() == Some(0.0));
        let gc_cpu_share = if light_gc_free {
            Figure::default()
        } else {
            Figure::light_first(light, full, "gc_cpu_share")
        };
        let source_of = if gc_cpu_share.traced {
            Some(full)
        } else {
            light
        };
        let positive = |v: Option<f64>| v.filter(|&v| v > 0.0);
        Headline {
            peak_resident: Figure::light_first(light, full, "peak_resident_bytes"),
            footprint_over_live: positive(full["footprint_over_live_at_peak"].as_f64()),
            footprint_resident: full["footprint_source"].as_str() == Some("resident"),
            allocs_per_unit: full["per_work_unit"]["allocations"].as_f64(),
            bytes_per_unit: full["per_work_unit"]["bytes_allocated"].as_f64(),
            peak_live: full["peak_live_bytes"].as_f64(),
            gc_cpu_share,
            gc_cpu_share_source: source_of
                .and_then(|s| s["gc_cpu_share_source"].as_str())
                .map(str::to_owned),
            gc_cycles: Figure::light_first(light, full, "gc_cycles"),
            duration_ns: Figure::light_first(light, full, "duration_ns"),
        }
    }
}

/// Why the footprint/live of a run's full trace (summary `s`) is not computed from resident
/// memory, or None when it is: the footprint is the heap's resident bytes
/// (`footprint_source` = resident), the ratio is that footprint over the live peak, and the
/// heap's resident bytes fit in the process's peak resident set.
pub fn footprint_not_resident(s: &Value) -> Option<String> {
    if s["footprint_source"].as_str() != Some("resident") {
        return Some(format!(
            "footprint_source is {}, not \"resident\"",
            s["footprint_source"]
        ));
    }
    let (Some(footprint), Some(live), Some(ratio), Some(peak_resident)) = (
        s["footprint_at_peak_live"].as_f64(),
        s["peak_live_bytes"].as_f64(),
        s["footprint_over_live_at_peak"].as_f64(),
        s["peak_resident_bytes"].as_f64(),
    ) else {
        return Some("footprint, live peak, ratio or peak resident missing".into());
    };
    if live <= 0.0 || footprint <= 0.0 {
        return Some(format!("footprint {footprint} over live {live}"));
    }
    if (ratio - footprint / live).abs() > 1e-6 * ratio.max(1.0) {
        return Some(format!(
            "footprint/live {ratio} is not footprint {footprint} / live {live}"
        ));
    }
    if footprint > peak_resident {
        return Some(format!(
            "heap footprint {footprint} exceeds the peak resident set {peak_resident}"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check that time and GC figures come from the cheap recording when it has them, and from
    /// the full trace, marked traced, when it does not.
    #[test]
    fn light_recording_first() {
        let full = serde_json::json!({
            "duration_ns": 9e9, "gc_cpu_share": 0.5, "gc_cpu_share_source": "traced source",
            "gc_cycles": 10, "footprint_over_live_at_peak": 2.0, "peak_live_bytes": 100.0,
            "per_work_unit": {"allocations": 1.0, "bytes_allocated": 32.0}
        });
        let light = serde_json::json!({
            "duration_ns": 1e9, "gc_cpu_share": 0.1, "gc_cpu_share_source": "light source",
            "gc_cycles": 12, "peak_resident_bytes": 4096.0
        });
        let h = Headline::from_summaries(&full, Some(&light));
        assert_eq!(
            h.duration_ns,
            Figure {
                value: Some(1e9),
                traced: false
            }
        );
        assert_eq!(h.gc_cpu_share.value, Some(0.1));
        assert_eq!(h.gc_cpu_share_source.as_deref(), Some("light source"));
        assert_eq!(h.peak_resident.value, Some(4096.0));
        assert!(!h.footprint_resident);
        assert_eq!(h.footprint_over_live, Some(2.0));
        assert_eq!(h.allocs_per_unit, Some(1.0));

        let h = Headline::from_summaries(&full, None);
        assert_eq!(
            h.duration_ns,
            Figure {
                value: Some(9e9),
                traced: true
            }
        );
        assert!(h.gc_cpu_share.traced);
        assert_eq!(h.gc_cpu_share_source.as_deref(), Some("traced source"));
        assert_eq!(h.peak_resident.value, None);

        let no_gc = serde_json::json!({"duration_ns": 1e9, "gc_cycles": 0});
        let h = Headline::from_summaries(&full, Some(&no_gc));
        assert_eq!(h.gc_cpu_share, Figure::default());
    }

    /// Check the resident-footprint check: it accepts a resident footprint over the live peak
    /// that fits in the resident set, and names what is wrong otherwise.
    #[test]
    fn resident_footprint_check() {
        let ok = serde_json::json!({
            "footprint_source": "resident", "footprint_at_peak_live": 3e6,
            "peak_live_bytes": 2e6, "footprint_over_live_at_peak": 1.5, "peak_resident_bytes": 8e6
        });
        assert_eq!(footprint_not_resident(&ok), None);
        let mut mapped = ok.clone();
        mapped["footprint_source"] = "mapped".into();
        assert!(footprint_not_resident(&mapped).unwrap().contains("mapped"));
        let mut wrong = ok.clone();
        wrong["footprint_over_live_at_peak"] = 500.0.into();
        assert!(footprint_not_resident(&wrong).unwrap().contains("is not"));
        let mut too_big = ok;
        too_big["peak_resident_bytes"] = 1e6.into();
        assert!(
            footprint_not_resident(&too_big)
                .unwrap()
                .contains("exceeds")
        );
    }
}
