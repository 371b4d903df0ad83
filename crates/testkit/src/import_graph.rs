//! The import graph between the top-level modules of a crate, to keep it
//! free of cycles: a reader following one behaviour should move down the
//! layers, never around in a circle.
//!
//! A module is a top-level file (`src/x.rs`) or folder (`src/x/`); an edge
//! `a -> b` is any path in `a` that starts at `crate::b` (or reaches `b`
//! through `super::`). Comment lines are skipped, and so is a file's test
//! module (everything from its first `#[cfg(test)]` line on): a test may
//! use what it likes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Edges between top-level modules: `graph[a]` is what `a` uses.
pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// The graph of the crate whose sources are under `src`.
pub fn of_crate(src: &Path) -> std::io::Result<Graph> {
    let mut files = Vec::new();
    collect(src, &mut files)?;
    let tops: BTreeSet<String> = files
        .iter()
        .filter_map(|file| module_path(src, file).into_iter().next())
        .collect();
    let mut graph = Graph::new();
    for file in &files {
        let module = module_path(src, file);
        let Some(top) = module.first().cloned() else {
            continue;
        };
        let text = std::fs::read_to_string(file)?;
        let used = graph.entry(top.clone()).or_default();
        for target in targets(&text, &module) {
            if target != top && tops.contains(&target) {
                used.insert(target);
            }
        }
    }
    Ok(graph)
}

/// A cycle in `graph`, as the modules along it (first repeated at the
/// end), or `None`.
pub fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &Graph,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_owned(), Mark::Open);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, marks, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        let mut stack = Vec::new();
        if let Some(cycle) = visit(node, graph, &mut marks, &mut stack) {
            return Some(cycle);
        }
    }
    None
}

/// Panics naming the cycle when the crate under `src` has one.
pub fn assert_acyclic(src: &Path) {
    let graph = match of_crate(src) {
        Ok(graph) => graph,
        Err(err) => panic!("cannot read the sources under {}: {err}", src.display()),
    };
    if let Some(cycle) = find_cycle(&graph) {
        panic!(
            "import cycle between the top-level modules of {}: {}",
            src.display(),
            cycle.join(" -> ")
        );
    }
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    Ok(())
}

/// The module a file holds: `x.rs` and `x/mod.rs` are `[x]`, `x/y.rs` is
/// `[x, y]`, `lib.rs` and `main.rs` the crate root `[]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap_or(file);
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
        parts.clear();
    }
    parts
}

/// The top-level modules `text` (of module `module`) names in paths.
fn targets(text: &str, module: &[String]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        if line.trim() == "#[cfg(test)]" {
            break;
        }
        if line.trim_start().starts_with("//") {
            continue;
        }
        for (at, _) in line.match_indices("crate::") {
            let before = line[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                continue;
            }
            found.extend(first_segments(&line[at + "crate::".len()..]));
        }
        for (at, _) in line.match_indices("super::") {
            let before = line[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let mut rest = &line[at..];
            let mut depth: usize = 0;
            while let Some(next) = rest.strip_prefix("super::") {
                depth += 1;
                rest = next;
            }
            // A file's own `mod tests` reaches the file with one `super`.
            let inline = usize::from(in_inline_module(text, line));
            let depth = depth.saturating_sub(inline);
            if depth >= module.len() {
                found.extend(first_segments(rest));
            } else if (depth > 0 || module.len() > 1)
                && let Some(top) = module.first()
            {
                found.insert(top.clone());
            }
        }
    }
    found
}

/// Whether `line` sits inside an inline `mod … {` block of `text`, as the
/// `mod tests` at the end of a file does (its `super` is the file).
fn in_inline_module(text: &str, line: &str) -> bool {
    let Some(line_at) = text.find(line) else {
        return false;
    };
    let before = &text[..line_at];
    before.lines().any(|l| {
        let l = l.trim_start();
        (l.starts_with("mod ") || l.starts_with("pub mod ") || l.starts_with("pub(crate) mod "))
            && l.trim_end().ends_with('{')
    })
}

/// The first segment of each path `rest` starts: `x::…` gives `x`,
/// `{x, y::z}` gives `x` and `y`.
fn first_segments(rest: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let Some(group) = rest.strip_prefix('{') else {
        let name = ident(rest);
        return if name.is_empty() { vec![] } else { vec![name] };
    };
    let mut names = Vec::new();
    let mut depth = 0;
    let mut start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => start = true,
            c if start && !c.is_whitespace() => {
                start = false;
                let name = ident(&group[i..]);
                if !name.is_empty() && name != "self" {
                    names.push(name);
                }
            }
            _ => {}
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_first_module() {
        let top = vec!["a".to_owned()];
        let found = targets(
            "use crate::b::X;\nuse crate::{c, d::{E, F}};\n// crate::ignored\nlet x = crate::e::f();\n\
             #[cfg(test)]\nmod tests { use crate::g; }",
            &top,
        );
        assert_eq!(found.into_iter().collect::<Vec<_>>(), ["b", "c", "d", "e"]);
    }

    #[test]
    fn super_from_a_top_level_file_is_the_crate_root() {
        let found = targets("use super::model::Y;", &["policy".to_owned()]);
        assert_eq!(found.into_iter().collect::<Vec<_>>(), ["model"]);
        let found = targets(
            "use super::views::Y;",
            &["console".to_owned(), "links".to_owned()],
        );
        assert_eq!(found.into_iter().collect::<Vec<_>>(), ["console"]);
    }

    #[test]
    fn a_cycle_is_found_and_named() {
        let mut graph = Graph::new();
        graph.entry("a".into()).or_default().insert("b".into());
        graph.entry("b".into()).or_default().insert("c".into());
        assert_eq!(find_cycle(&graph), None);
        graph.entry("c".into()).or_default().insert("a".into());
        assert_eq!(
            find_cycle(&graph),
            Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
        );
    }
}
