//! The crate's layering rule, checked: a module uses only modules of its own layer or the
//! layers below (see the crate docs). Reads the sources and every `crate::` path in them.

use std::{collections::BTreeMap, fs, path::Path};

/// The layers, bottom up: a top-level module of `src/` and its number.
const LAYERS: &[(&str, u8)] = &[
    ("base", 1),
    ("run", 2),
    ("call", 3),
    ("steps", 4),
    ("registry", 5),
    ("runtime", 6),
    ("api", 7),
];

fn layer_of(module: &str) -> Option<u8> {
    LAYERS
        .iter()
        .find(|(name, _)| *name == module)
        .map(|(_, layer)| *layer)
}

/// The top-level modules a file's `crate::` paths name, including grouped imports
/// (`use crate::{a::x, b::{y, z}}` names `a` and `b`).
fn used_modules(source: &str) -> Vec<String> {
    let mut used = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The first segment of each path in the group, at brace depth 0.
            let (mut depth, mut name, mut seen) = (0usize, String::new(), false);
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => (name, seen) = (String::new(), false),
                    c if depth == 0 && !seen && (c.is_alphanumeric() || c == '_') => name.push(c),
                    ':' if depth == 0 && !seen && !name.is_empty() => {
                        used.push(std::mem::take(&mut name));
                        seen = true;
                    }
                    _ => {}
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            // `crate::Name` is a doc link to a re-export at the crate's root, not a use.
            if !name.starts_with(char::is_uppercase) {
                used.push(name);
            }
        }
    }
    used
}

/// Every file under `dir`, in its subdirectories too (a module split into files).
fn sources_in(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).expect("read layer dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            found.extend(sources_in(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn every_module_uses_only_its_own_layer_or_those_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    for (module, _) in LAYERS {
        let dir = src.join(module);
        if dir.is_dir() {
            for path in sources_in(&dir) {
                files.insert(path, *module);
            }
        } else {
            files.insert(src.join(format!("{module}.rs")), *module);
        }
    }
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut violations = Vec::new();
    for (path, module) in &files {
        let own = layer_of(module).expect("listed");
        let source = fs::read_to_string(path).expect("read source");
        for used in used_modules(&source) {
            match layer_of(&used) {
                Some(layer) if layer <= own => {}
                Some(layer) => violations.push(format!(
                    "{} (layer {own}) uses crate::{used} (layer {layer})",
                    path.strip_prefix(&src).unwrap_or(path).display()
                )),
                None => violations.push(format!(
                    "{} uses crate::{used}, which is in no layer",
                    path.strip_prefix(&src).unwrap_or(path).display()
                )),
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_path_reader_sees_grouped_and_plain_paths() {
    let source = "use crate::{\n    base::{clock::Clock, error::E},\n    run::env::Env,\n};\n/// [`A`](crate::A)\nfn f() { crate::api::x(); }";
    assert_eq!(used_modules(source), ["base", "run", "api"]);
}
