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
//! Call sites are shown symbolized, with flame graphs of bytes allocated and of bytes live at
//! the peak, when the trace has been symbolized (`frames.parquet`): if the report was built
//! without calling [`crate::reports::callsites::CallSites::symbolize`], the page loads the
//! frames of `report.trace.dir` itself.
//!
//! ```no_run
//! let report = analysis::report::build("trace".as_ref(), &Default::default()).unwrap();
//! analysis::render::html::write_report(&report, "report.html".as_ref()).unwrap();
//! ```

use std::{borrow::Cow, fs, path::Path};

use serde::Serialize;

use crate::{
    compare::Dashboard, error::AnalysisError, report::Report, summary::Summary,
    symbolize::StackFrames,
};

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

/// `report` with its call sites symbolized from the trace's `frames.parquet`, when it has one
/// and they are not symbolized yet. A damaged frames table leaves the sites as stack ids with a
/// note on the page, rather than failing the whole report.
fn with_symbols(report: &Report) -> Cow<'_, Report> {
    if report.callsites.symbolized || !report.callsites.available {
        return Cow::Borrowed(report);
    }
    match StackFrames::load(Path::new(&report.trace.dir)) {
        Ok(None) => Cow::Borrowed(report),
        Ok(Some(frames)) => {
            let mut report = report.clone();
            report.callsites.symbolize(&frames);
            Cow::Owned(report)
        }
        Err(err) => {
            let mut report = report.clone();
            report.callsites.note = Some(format!("frames.parquet could not be read: {err}"));
            Cow::Owned(report)
        }
    }
}

/// The report page.
pub fn report_html(report: &Report) -> Result<String, AnalysisError> {
    let report = with_symbols(report);
    page(
        &format!("alloctrace report: {}", report.trace.label),
        &Page::Report {
            report: &report,
            summary: Box::new(report.summary()),
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

fn write(path: &Path, html: &str) -> Result<(), AnalysisError> {
    fs::write(path, html).map_err(|source| AnalysisError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Writes the report page to `path`.
pub fn write_report(report: &Report, path: &Path) -> Result<(), AnalysisError> {
    write(path, &report_html(report)?)
}

/// Writes the comparison page to `path`.
pub fn write_dashboard(dashboard: &Dashboard, path: &Path) -> Result<(), AnalysisError> {
    write(path, &dashboard_html(dashboard)?)
}
