//! Self-contained HTML: one file with the chart library, the page script and the report data
//! embedded, so it opens offline from `file://` and can be mailed or attached to a CI run.
//!
//! Charts use Apache ECharts (vendored in `analysis/assets/echarts`, Apache-2.0): it has every
//! chart type the reports need (lines with GC intervals as shaded areas, bar histograms on log
//! axes, zoom) in one library. uPlot would be ~20× smaller but only draws line/bar series, so
//! histograms, overlays and tooltips would be hand-written; a 1 MiB page is an acceptable price.
//!
//! The page checks itself once every chart has rendered: each chart must hold data and have
//! painted pixels, and no script error may have occurred. The verdict goes to
//! `#alloctrace-status` (`data-state="ok"` or `"fail"`) and `document.title`, which the browser
//! test reads with `chromium --dump-dom`.
//!
//! Rendering is pure: the report carries everything the page shows (call sites are named by
//! [`crate::report::build`] when the trace has `frames.parquet`), and the caller writes the
//! page where it wants.
//!
//! ```no_run
//! let report = analysis::report::build("trace".as_ref(), &Default::default()).unwrap();
//! std::fs::write("report.html", analysis::render::html::report_html(&report).unwrap()).unwrap();
//! ```

use serde::Serialize;

use crate::{compare::Dashboard, error::AnalysisError, report::Report, summary::Summary};

const ECHARTS_JS: &str = include_str!("../../assets/echarts/echarts.min.js");
const APP_JS: &str = include_str!("../../assets/report.js");
const APP_CSS: &str = include_str!("../../assets/report.css");
/// Marker the browser test and users can grep for: the version of the page script.
pub const STATUS_ID: &str = "alloctrace-status";

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Page<'a> {
    Report {
        report: &'a Report,
        summary: Box<Summary>,
    },
    Dashboard {
        dashboard: &'a Dashboard,
    },
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, data: &Page<'_>) -> Result<String, AnalysisError> {
    // `<` only occurs inside JSON strings, where `\u003c` means the same: no `</script>` can end
    // the data block early, whatever a function name or command line holds.
    let json = serde_json::to_string(data)
        .map_err(|source| AnalysisError::Serialize { source })?
        .replace('<', "\\u003c");
    let title = escape_html(title);
    Ok(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"alloctrace {version}\">\n<title>{title}</title>\n<style>\n{APP_CSS}\n</style>\n\
         <script>\n{ECHARTS_JS}\n</script>\n</head>\n<body>\n<div id=\"{STATUS_ID}\" data-state=\"pending\">pending</div>\n\
         <main id=\"app\"><h1>{title}</h1><noscript>This report needs JavaScript to draw its charts.</noscript></main>\n\
         <script id=\"alloctrace-data\" type=\"application/json\">{json}</script>\n<script>\n{APP_JS}\n</script>\n</body>\n</html>\n",
        version = env!("CARGO_PKG_VERSION"),
    ))
}

/// The report page.
pub fn report_html(report: &Report) -> Result<String, AnalysisError> {
    page(
        &format!("alloctrace report: {}", report.trace.label),
        &Page::Report {
            report,
            summary: Box::new(Summary::from_report(report)),
        },
    )
}

/// The comparison page.
pub fn dashboard_html(dashboard: &Dashboard) -> Result<String, AnalysisError> {
    let labels: Vec<&str> = dashboard.runs.iter().map(|r| r.label.as_str()).collect();
    page(
        &format!("alloctrace compare: {}", labels.join(" vs ")),
        &Page::Dashboard { dashboard },
    )
}
