//! The crate's modules are layers: each may use only the modules listed before it in
//! `src/lib.rs`'s crate map (and README's module table). This reads every source file and
//! fails on a `crate::MODULE` path (or `crate::{MODULE, ...}`) that points up or sideways into
//! a later layer, which is how a cycle between modules would begin; and on the few uses of an
//! earlier layer that the architecture forbids all the same (storage and the index know
//! nothing of wire formats).

use std::path::{Path, PathBuf};

/// The layers, lowest first, as the crate map lists them.
const LAYERS: &[&str] = &[
    "limits", "config", "domain", "route", "otlp", "index", "storage", "seal", "metrics", "query",
    "shard", "http", "server",
];

/// Earlier layers a module may not use anyway: (module, forbidden).
const FORBIDDEN: &[(&str, &str)] = &[
    ("storage", "otlp"),
    ("index", "otlp"),
    ("domain", "otlp"),
    ("seal", "otlp"),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`src/shard/query/mod.rs` → `shard`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let first = file.strip_prefix(src).ok()?.components().next()?;
    let name = first.as_os_str().to_str()?;
    Some(name.trim_end_matches(".rs").to_string())
}

/// The `crate::NAME` paths of `text`, outside comments, with their line numbers.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let names: Vec<&str> = match after.strip_prefix('{') {
                // `crate::{a, b::c}` on one line; the crate's style is one `use crate::module`
                // per module, which the other arm reads.
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .map(str::trim)
                    .collect(),
                None => vec![after],
            };
            for name in names {
                let name: String = name
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                out.push((i + 1, name));
            }
            rest = after;
        }
    }
    out
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    let mut sorted_layers = LAYERS.to_vec();
    sorted_layers.sort_unstable();
    let mut sorted_declared = declared.clone();
    sorted_declared.sort_unstable();
    assert_eq!(
        sorted_layers, sorted_declared,
        "LAYERS and src/lib.rs's modules differ"
    );

    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let Some(level) = LAYERS.iter().position(|l| *l == module) else {
            continue; // lib.rs, main.rs
        };
        let text = std::fs::read_to_string(file).expect("a source file");
        for (line, used) in crate_paths(&text) {
            if FORBIDDEN.contains(&(module.as_str(), used.as_str())) {
                wrong.push(format!(
                    "{}:{line}: {module} uses crate::{used}, which it must know nothing of",
                    file.strip_prefix(&src).unwrap_or(file).display()
                ));
            }
            if let Some(used_level) = LAYERS.iter().position(|l| *l == used) {
                if used_level > level {
                    wrong.push(format!(
                        "{}:{line}: {module} uses crate::{used}, a later layer",
                        file.strip_prefix(&src).unwrap_or(file).display()
                    ));
                }
            }
        }
    }
    assert!(files.len() > 40, "found {} source files", files.len());
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}
