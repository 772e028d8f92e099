//! Flame-graph trees: weighted stacks merged into a tree of frames (callers above callees), as
//! the report draws them.

use rustc_hash::FxHashMap;
use serde::Serialize;

/// Nodes lighter than this fraction of the root are dropped (their weight stays in their
/// parent): invisible at any zoom a report is read at, and they would bloat the page.
const MIN_FRACTION: u64 = 20_000;

/// One node of a flame graph. Serialized with one-letter keys: a report embeds thousands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FlameNode {
    /// Frame name (function, or module+offset when unresolved).
    #[serde(rename = "n")]
    pub name: String,
    /// Weight of this frame and everything it called.
    #[serde(rename = "v")]
    pub value: u64,
    /// Callees, heaviest first.
    #[serde(rename = "c", skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<FlameNode>,
}

/// A stack and its weight.
#[derive(Clone, Copy, Debug)]
pub struct FlameStack<'a> {
    /// Frame names, innermost first (as in `stacks.parquet`).
    pub frames: &'a [String],
    pub weight: u64,
}

#[derive(Default)]
struct TrieNode {
    value: u64,
    children: FxHashMap<String, usize>,
}

impl FlameNode {
    /// Merges `stacks` under a root named `root`; `None` when the total weight is 0.
    pub fn build<'a>(
        root: &str,
        stacks: impl IntoIterator<Item = FlameStack<'a>>,
    ) -> Option<FlameNode> {
        let mut nodes = vec![TrieNode::default()];
        for stack in stacks {
            if stack.weight == 0 {
                continue;
            }
            nodes[0].value = nodes[0].value.saturating_add(stack.weight);
            let mut at = 0;
            for frame in stack.frames.iter().rev() {
                let next = nodes.len();
                let child = *nodes[at].children.entry(frame.clone()).or_insert(next);
                if child == next {
                    nodes.push(TrieNode::default());
                }
                nodes[child].value = nodes[child].value.saturating_add(stack.weight);
                at = child;
            }
        }
        let total = nodes[0].value;
        if total == 0 {
            return None;
        }
        let floor = total / MIN_FRACTION;
        Some(convert(&nodes, 0, root.to_owned(), floor))
    }

    /// Number of nodes in the tree.
    pub fn len(&self) -> usize {
        1 + self.children.iter().map(FlameNode::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

fn convert(nodes: &[TrieNode], index: usize, name: String, floor: u64) -> FlameNode {
    let node = &nodes[index];
    let mut children: Vec<FlameNode> = node
        .children
        .iter()
        .filter(|&(_, &child)| nodes[child].value > floor)
        .map(|(name, &child)| convert(nodes, child, name.clone(), floor))
        .collect();
    children.sort_by(|a, b| b.value.cmp(&a.value).then_with(|| a.name.cmp(&b.name)));
    FlameNode {
        name,
        value: node.value,
        children,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(frames: &[&str]) -> Vec<String> {
        frames.iter().map(|f| (*f).to_owned()).collect()
    }

    /// Check that stacks merge from the outermost frame, weights add up at every level,
    /// callees are ordered heaviest first, and zero weights are ignored.
    #[test]
    fn merges_from_the_root() {
        let a = names(&["malloc", "make_a", "main"]);
        let b = names(&["malloc", "make_b", "main"]);
        let c = names(&["malloc", "make_a", "main"]);
        let tree = FlameNode::build(
            "all",
            [
                FlameStack {
                    frames: &a,
                    weight: 10,
                },
                FlameStack {
                    frames: &b,
                    weight: 30,
                },
                FlameStack {
                    frames: &c,
                    weight: 5,
                },
                FlameStack {
                    frames: &b,
                    weight: 0,
                },
            ],
        )
        .unwrap();
        assert_eq!(tree.value, 45);
        assert_eq!(tree.children.len(), 1);
        let main = &tree.children[0];
        assert_eq!((main.name.as_str(), main.value), ("main", 45));
        let callees: Vec<(&str, u64)> = main
            .children
            .iter()
            .map(|c| (c.name.as_str(), c.value))
            .collect();
        assert_eq!(callees, [("make_b", 30), ("make_a", 15)]);
        assert_eq!(main.children[1].children[0].name, "malloc");
        assert_eq!(tree.len(), 6);
        assert!(
            FlameNode::build(
                "all",
                [FlameStack {
                    frames: &a,
                    weight: 0
                }]
            )
            .is_none()
        );
    }
}
