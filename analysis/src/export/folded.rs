//! Folded stacks, the input format of `flamegraph.pl` and inferno: one line per distinct stack,
//! frames from the outermost to the innermost separated by `;`, a space and the weight.

use std::{collections::BTreeMap, io::Write};

use super::{NamedProfile, profile::Measure};

/// Frame names may not contain the separators of the format.
fn clean(name: &str) -> String {
    name.replace(';', ":").replace(['\n', '\r'], " ")
}

/// The folded lines of `named` weighted by `measure`, sorted, identical stacks merged, zero
/// weights left out. `lines` appends ` (file:line)` to each frame (distinct lines of one
/// function then stay apart).
pub fn lines(named: &NamedProfile, measure: Measure, lines: bool) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for sample in &named.profile.samples {
        let weight = measure.of(&sample.values);
        if weight == 0 {
            continue;
        }
        let frames = named.frame_names(sample);
        let key = frames
            .iter()
            .rev()
            .map(|f| {
                let mut name = f.function_or_address();
                if lines && let Some(location) = f.location() {
                    name.push_str(&format!(" ({location})"));
                }
                clean(&name)
            })
            .collect::<Vec<_>>()
            .join(";");
        *out.entry(key).or_default() += weight;
    }
    out
}

/// Writes the folded lines.
pub fn write(
    named: &NamedProfile,
    measure: Measure,
    with_lines: bool,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    for (stack, weight) in lines(named, measure, with_lines) {
        writeln!(out, "{stack} {weight}")?;
    }
    Ok(())
}
