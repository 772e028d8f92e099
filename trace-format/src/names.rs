//! The values of the trace's dictionary columns `event`, `runtime` and `domain`: each name is
//! spelled here once, written by the tracer through `as_str` and read back through `parse`, so
//! writer and readers cannot disagree.
//!
//! ```
//! use trace_format::names::{Event, Runtime};
//! assert_eq!(Event::parse("gc_start"), Event::GcStart);
//! assert_eq!(Runtime::parse("go"), Some(Runtime::Go));
//! assert_eq!(Event::GcStart.as_str(), "gc_start");
//! ```

/// Declares the enum of a dictionary column: its values as variants, `as_str` and the parse
/// strum derives from the variant names (snake_case), `Display` and `Serialize` as written in
/// the trace (summary.json uses them as keys and values).
macro_rules! column_values {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident,)+ }) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
            strum::EnumString, strum::IntoStaticStr, strum::VariantArray,
        )]
        #[strum(serialize_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// The value as the trace spells it.
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

column_values! {
    /// The `event` column: what a row describes.
    Event {
        Alloc,
        Free,
        Realloc,
        Mmap,
        Munmap,
        Mremap,
        Brk,
        Mprotect,
        Madvise,
        GcStart,
        GcEnd,
        StwStart,
        StwEnd,
        /// A sample of a process's resident memory (`rss_bytes`, `heap_rss_bytes`), taken by the
        /// tracer at a fixed period, not by a probe.
        Rss,
        /// A value this reader does not know (written by a newer tracer): readers count and skip
        /// such rows; the tracer never writes it.
        Unknown,
    }
}

impl Event {
    /// Reads an `event` value; names this version does not know are [`Event::Unknown`], so an
    /// older reader skips newer kinds of rows instead of failing.
    pub fn parse(text: &str) -> Event {
        text.parse().unwrap_or(Event::Unknown)
    }
}

column_values! {
    /// The `runtime` column: whose allocator a row comes from.
    Runtime {
        Native,
        Go,
        Python,
    }
}

impl Runtime {
    pub fn parse(text: &str) -> Option<Runtime> {
        text.parse().ok()
    }
}

column_values! {
    /// The `domain` column: CPython's allocator domains, and the arenas pymalloc carves them
    /// from.
    Domain {
        /// `PyObject_Malloc` & co. (pymalloc).
        Obj,
        /// `PyMem_Malloc` & co. (pymalloc since 3.6).
        Mem,
        /// `PyMem_RawMalloc` & co. (libc).
        Raw,
        /// pymalloc's arenas: the backing memory `obj` and `mem` blocks live in.
        Arena,
    }
}

impl Domain {
    pub fn parse(text: &str) -> Option<Domain> {
        text.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use strum::VariantArray as _;

    use super::*;

    /// Check that every name reads back as itself.
    #[test]
    fn names_round_trip() {
        for &e in Event::VARIANTS {
            assert_eq!(Event::parse(e.as_str()), e);
        }
        for &r in Runtime::VARIANTS {
            assert_eq!(Runtime::parse(r.as_str()), Some(r));
        }
        for &d in Domain::VARIANTS {
            assert_eq!(Domain::parse(d.as_str()), Some(d));
        }
        assert_eq!(Event::GcStart.as_str(), "gc_start");
        assert_eq!(
            serde_json::to_string(&Runtime::Python).ok().as_deref(),
            Some("\"python\"")
        );
    }

    /// Check that names a newer tracer might write are not mistaken for known ones.
    #[test]
    fn unknown_names() {
        assert_eq!(Event::parse("rss_v2"), Event::Unknown);
        assert_eq!(Event::parse(""), Event::Unknown);
        assert_eq!(Runtime::parse("jvm"), None);
        assert_eq!(Domain::parse("OBJ"), None);
    }
}
