//! Reading the side tables symbolization needs: `stacks.parquet`, `modules.parquet`, and which
//! process used which stack (from the events), plus the address → module mapping.

use std::{collections::BTreeSet, fs::File, path::Path};

use arrow::{
    array::{Array, AsArray, RecordBatch},
    datatypes::{UInt32Type, UInt64Type},
};
use parquet::arrow::{ProjectionMask, arrow_reader::ParquetRecordBatchReaderBuilder};
use rustc_hash::{FxHashMap, FxHashSet};

use super::SymbolizeError;
use trace_format::schema::{self, col, stack_col};

/// Every record batch of the Parquet file at `path`, restricted to `columns` (all when empty).
/// A panic of the Parquet decoder on a damaged file becomes an error, as in [`crate::load`].
pub(crate) fn read_batches(
    path: &Path,
    columns: &[&str],
) -> Result<Vec<RecordBatch>, SymbolizeError> {
    trace_format::guard::catch(|| read_batches_unguarded(path, columns)).unwrap_or_else(
        |panicked| {
            Err(SymbolizeError::Io {
                path: path.to_owned(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("the Parquet decoder failed on malformed data: {panicked}"),
                ),
            })
        },
    )
}

fn read_batches_unguarded(
    path: &Path,
    columns: &[&str],
) -> Result<Vec<RecordBatch>, SymbolizeError> {
    let parquet = |source| SymbolizeError::Parquet {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(|source| SymbolizeError::Io {
        path: path.to_owned(),
        source,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet)?;
    let builder = if columns.is_empty() {
        builder
    } else {
        let schema = builder.schema().clone();
        let mut roots = Vec::with_capacity(columns.len());
        // Optional columns (stack_id in a trace recorded without stacks) may be absent.
        for &column in columns {
            if let Ok(index) = schema.index_of(column) {
                roots.push(index);
            }
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        builder.with_projection(mask)
    };
    builder
        .build()
        .map_err(parquet)?
        .map(|batch| batch.map_err(|e| parquet(e.into())))
        .collect()
}

fn column_error(path: &Path, column: &'static str) -> SymbolizeError {
    SymbolizeError::Column {
        path: path.to_owned(),
        column,
    }
}

/// A typed column of `batch`, or an error naming the file and column.
macro_rules! typed {
    ($batch:expr, $path:expr, $name:expr, $cast:ident :: < $ty:ty >) => {
        $batch
            .column_by_name($name)
            .and_then(|c| c.$cast::<$ty>())
            .ok_or_else(|| column_error($path, $name))?
    };
    ($batch:expr, $path:expr, $name:expr, $cast:ident) => {
        $batch
            .column_by_name($name)
            .and_then(|c| c.$cast())
            .ok_or_else(|| column_error($path, $name))?
    };
}

/// `stacks.parquet`: stack id → frames, innermost first.
pub(crate) fn read_stacks(dir: &Path) -> Result<FxHashMap<u32, Vec<u64>>, SymbolizeError> {
    let path = dir.join(schema::STACKS_FILE);
    if !path.exists() {
        return Err(SymbolizeError::NoStacks {
            dir: dir.to_owned(),
        });
    }
    let mut stacks = FxHashMap::default();
    for batch in read_batches(&path, &[])? {
        let ids = typed!(
            batch,
            &path,
            stack_col::STACK_ID,
            as_primitive_opt::<UInt32Type>
        );
        let frames = typed!(batch, &path, stack_col::FRAMES, as_list_opt::<i32>);
        for row in 0..batch.num_rows() {
            if ids.is_null(row) || frames.is_null(row) {
                continue;
            }
            let list = frames.value(row);
            let values = list
                .as_primitive_opt::<UInt64Type>()
                .ok_or_else(|| column_error(&path, stack_col::FRAMES))?;
            stacks.insert(ids.value(row), values.values().to_vec());
        }
    }
    Ok(stacks)
}

/// The Python frames of the stacks that have them (`stacks.parquet`'s `python_frames`,
/// innermost first), as named frames. Traces written before that column existed have none.
pub(crate) fn read_python_stacks(
    dir: &Path,
) -> Result<FxHashMap<u32, Vec<super::FrameName>>, SymbolizeError> {
    let path = dir.join(schema::STACKS_FILE);
    let mut stacks = FxHashMap::default();
    if !path.exists() {
        return Ok(stacks);
    }
    for batch in read_batches(&path, &[])? {
        let Some(python) = batch.column_by_name(stack_col::PYTHON_FRAMES) else {
            return Ok(stacks);
        };
        let python = python
            .as_list_opt::<i32>()
            .ok_or_else(|| column_error(&path, stack_col::PYTHON_FRAMES))?;
        let ids = typed!(
            batch,
            &path,
            stack_col::STACK_ID,
            as_primitive_opt::<UInt32Type>
        );
        for row in 0..batch.num_rows() {
            if ids.is_null(row) || python.is_null(row) {
                continue;
            }
            let items = python.value(row);
            let items = items
                .as_struct_opt()
                .ok_or_else(|| column_error(&path, stack_col::PYTHON_FRAMES))?;
            let field = |name| {
                items
                    .column_by_name(name)
                    .ok_or_else(|| column_error(&path, stack_col::PYTHON_FRAMES))
            };
            let function = field(stack_col::PY_FUNCTION)?
                .as_string_opt::<i32>()
                .ok_or_else(|| column_error(&path, stack_col::PY_FUNCTION))?;
            let file = field(stack_col::PY_FILE)?
                .as_string_opt::<i32>()
                .ok_or_else(|| column_error(&path, stack_col::PY_FILE))?;
            let line = field(stack_col::PY_LINE)?
                .as_primitive_opt::<UInt32Type>()
                .ok_or_else(|| column_error(&path, stack_col::PY_LINE))?;
            let frames = (0..items.len())
                .map(|i| super::FrameName {
                    function: Some(function.value(i).to_owned()),
                    file: Some(file.value(i).to_owned()),
                    line: (!line.is_null(i)).then(|| line.value(i)),
                    module: Some(PYTHON_MODULE.to_owned()),
                    status: super::Status::Ok,
                    ..super::FrameName::unknown(0)
                })
                .collect();
            stacks.insert(ids.value(row), frames);
        }
    }
    Ok(stacks)
}

/// The `module` of a Python frame.
pub const PYTHON_MODULE: &str = "[python]";

/// One executable file mapping of a traced process: a `modules.parquet` row, as written.
pub use trace_format::write::ModuleRow as Module;

/// `modules.parquet`.
pub(crate) fn read_modules(dir: &Path) -> Result<Vec<Module>, SymbolizeError> {
    let path = dir.join(schema::MODULES_FILE);
    if !path.exists() {
        return Err(SymbolizeError::NoModules {
            dir: dir.to_owned(),
        });
    }
    let mut modules = Vec::new();
    for batch in read_batches(&path, &[])? {
        let pid = typed!(batch, &path, stack_col::PID, as_primitive_opt::<UInt32Type>);
        let file = typed!(batch, &path, stack_col::PATH, as_string_opt::<i32>);
        let build_id = typed!(batch, &path, stack_col::BUILD_ID, as_string_opt::<i32>);
        let start = typed!(
            batch,
            &path,
            stack_col::START,
            as_primitive_opt::<UInt64Type>
        );
        let end = typed!(batch, &path, stack_col::END, as_primitive_opt::<UInt64Type>);
        let offset = typed!(
            batch,
            &path,
            stack_col::FILE_OFFSET,
            as_primitive_opt::<UInt64Type>
        );
        // ts_ns is optional: older traces wrote every mapping at start.
        let ts = batch
            .column_by_name(stack_col::TS_NS)
            .and_then(|c| c.as_primitive_opt::<UInt64Type>());
        let perms = batch
            .column_by_name(stack_col::PERMS)
            .and_then(|c| c.as_string_opt::<i32>());
        for row in 0..batch.num_rows() {
            if pid.is_null(row) || file.is_null(row) || start.is_null(row) || end.is_null(row) {
                continue;
            }
            modules.push(Module {
                pid: pid.value(row),
                path: file.value(row).to_owned(),
                build_id: build_id
                    .is_valid(row)
                    .then(|| build_id.value(row).to_ascii_lowercase())
                    .filter(|id| !id.is_empty()),
                start: start.value(row),
                end: end.value(row),
                file_offset: if offset.is_valid(row) {
                    offset.value(row)
                } else {
                    0
                },
                perms: perms
                    .filter(|p| p.is_valid(row))
                    .map_or_else(String::new, |p| p.value(row).to_owned()),
                ts_ns: ts.filter(|t| t.is_valid(row)).map_or(0, |t| t.value(row)),
            });
        }
    }
    Ok(modules)
}

/// The distinct (pid, stack id) pairs of the events: a stack's addresses mean something only in
/// the address space of the process that captured it.
pub(crate) fn stack_users(dir: &Path) -> Result<BTreeSet<(u32, u32)>, SymbolizeError> {
    let paths = trace_format::segments::list(dir).map_err(|source| SymbolizeError::Io {
        path: dir.join(schema::EVENTS_DIR),
        source,
    })?;
    let mut pairs = FxHashSet::default();
    for path in &paths {
        for batch in read_batches(path, &[col::PID, col::STACK_ID])? {
            let Some(stack) = batch
                .column_by_name(col::STACK_ID)
                .and_then(|c| c.as_primitive_opt::<UInt32Type>())
            else {
                continue;
            };
            let pid = typed!(batch, path, col::PID, as_primitive_opt::<UInt32Type>);
            for row in 0..batch.num_rows() {
                if stack.is_valid(row) && pid.is_valid(row) {
                    pairs.insert((pid.value(row), stack.value(row)));
                }
            }
        }
    }
    Ok(pairs.into_iter().collect())
}

/// Address → (module, file offset), per process.
#[derive(Debug, Default)]
pub struct ModuleMap {
    modules: Vec<Module>,
    /// Indices into `modules` per pid, sorted by start address.
    by_pid: FxHashMap<u32, Vec<usize>>,
}

impl ModuleMap {
    pub fn new(modules: Vec<Module>) -> ModuleMap {
        let mut by_pid: FxHashMap<u32, Vec<usize>> = FxHashMap::default();
        for (i, m) in modules.iter().enumerate() {
            if m.start < m.end {
                by_pid.entry(m.pid).or_default().push(i);
            }
        }
        for list in by_pid.values_mut() {
            list.sort_by_key(|&i| (modules[i].start, modules[i].ts_ns));
        }
        ModuleMap { modules, by_pid }
    }

    /// Every mapping, in `modules.parquet` order (indices as returned by [`Self::lookup`]).
    pub fn modules(&self) -> &[Module] {
        &self.modules
    }

    pub fn module(&self, index: usize) -> &Module {
        &self.modules[index]
    }

    /// The mapping of `pid` that holds `addr` and the file offset of `addr` in it. When ranges
    /// overlap (a library unloaded and another mapped at the same place), the latest mapping
    /// wins: stacks carry no time, and the latest is what a long-running process mostly ran.
    pub fn lookup(&self, pid: u32, addr: u64) -> Option<(usize, u64)> {
        let list = self.by_pid.get(&pid)?;
        let after = list.partition_point(|&i| self.modules[i].start <= addr);
        list[..after]
            .iter()
            .copied()
            .filter(|&i| addr < self.modules[i].end)
            .max_by_key(|&i| (self.modules[i].ts_ns, self.modules[i].start))
            .map(|i| {
                let m = &self.modules[i];
                (i, addr - m.start + m.file_offset)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(pid: u32, path: &str, start: u64, end: u64, file_offset: u64, ts_ns: u64) -> Module {
        Module {
            pid,
            path: path.to_owned(),
            build_id: None,
            start,
            end,
            file_offset,
            perms: "r-xp".to_owned(),
            ts_ns,
        }
    }

    /// Check that an address maps to the module of its own process with the right file
    /// offset, that ends are exclusive, and that other processes' mappings are never used.
    #[test]
    fn address_to_module_and_offset() {
        let map = ModuleMap::new(vec![
            module(1, "/bin/a", 0x1000, 0x2000, 0x1000, 0),
            module(1, "/lib/libc.so.6", 0x7000, 0x9000, 0x26000, 0),
            module(2, "/bin/b", 0x1000, 0x3000, 0, 0),
        ]);
        assert_eq!(map.lookup(1, 0x1000), Some((0, 0x1000)));
        assert_eq!(map.lookup(1, 0x1fff), Some((0, 0x1fff)));
        assert_eq!(map.lookup(1, 0x2000), None);
        assert_eq!(map.lookup(1, 0x8123), Some((1, 0x27123)));
        assert_eq!(map.lookup(1, 0x6fff), None);
        assert_eq!(map.lookup(2, 0x2500), Some((2, 0x1500)));
        assert_eq!(map.lookup(3, 0x1500), None);
        assert_eq!(map.module(1).path, "/lib/libc.so.6");
    }

    /// Check that when two mappings of one process overlap (unloaded and reloaded), the later
    /// one answers, and that an empty range is ignored.
    #[test]
    fn later_mapping_wins_on_overlap() {
        let map = ModuleMap::new(vec![
            module(1, "/lib/old.so", 0x10000, 0x20000, 0, 5),
            module(1, "/lib/new.so", 0x18000, 0x30000, 0x1000, 9),
            module(1, "/lib/empty.so", 0x40000, 0x40000, 0, 0),
        ]);
        assert_eq!(map.lookup(1, 0x11000), Some((0, 0x1000)));
        assert_eq!(map.lookup(1, 0x19000), Some((1, 0x2000)));
        assert_eq!(map.lookup(1, 0x40000), None);
    }
}
