mod attach;
mod bad_input;
mod common;
mod golang;
mod native;
mod python;
mod rss;
mod stop;
mod symbols;
mod targets;
mod tree;

/// (event, size, go_type) of every row, for tests that need the Go columns.
fn golang_rows(dir: &std::path::Path) -> Vec<(String, u64, Option<String>)> {
    use arrow::array::AsArray;
    let mut out = Vec::new();
    for b in common::event_batches(dir) {
        let (event, go_type) = (common::strings(&b, "event"), common::strings(&b, "go_type"));
        let size = b
            .column_by_name("size")
            .unwrap()
            .as_primitive::<arrow::datatypes::UInt64Type>()
            .clone();
        for i in 0..b.num_rows() {
            out.push((
                event[i].clone().unwrap_or_default(),
                size.value(i),
                go_type[i].clone(),
            ));
        }
    }
    out
}
