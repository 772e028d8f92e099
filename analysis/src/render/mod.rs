//! Turning reports into something to read: a few terminal lines ([`text`]) or a self-contained
//! HTML page with charts ([`html`]).
//!
//! ```no_run
//! let report = analysis::report::build("trace".as_ref(), &Default::default()).unwrap();
//! print!("{}", analysis::render::text::summary(&report));
//! std::fs::write("report.html", analysis::render::html::report_html(&report).unwrap()).unwrap();
//! ```

pub mod html;
pub mod text;

/// `bytes` with a binary unit (B, KiB, MiB, GiB, TiB).
pub fn bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `ns` in the largest unit that keeps it above 1 (ns, µs, ms, s).
pub fn duration(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.1} µs", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} ms", ns as f64 / 1e6),
        _ => format!("{:.2} s", ns as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    /// Check unit formatting at the unit boundaries.
    #[test]
    fn units() {
        assert_eq!(super::bytes(1023), "1023 B");
        assert_eq!(super::bytes(1024), "1.0 KiB");
        assert_eq!(super::bytes(3 << 20), "3.0 MiB");
        assert_eq!(super::duration(999), "999 ns");
        assert_eq!(super::duration(1_500_000), "1.5 ms");
        assert_eq!(super::duration(2_000_000_000), "2.00 s");
    }
}
