//! Every element class's doc block is complete (Click's discipline): ports, arguments, handlers and an
//! example (which the doctests run). Reads the sources of nf-core's and nf-drivers' elements.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The doc comment right above `pub struct NAME` (attributes in between allowed).
fn struct_doc(src: &str, name: &str) -> Option<String> {
    let at = src
        .find(&format!("pub struct {name} "))
        .or_else(|| src.find(&format!("pub struct {name};")))
        .or_else(|| src.find(&format!("pub struct {name}<")))?;
    let mut doc: Vec<&str> = Vec::new();
    for line in src[..at].lines().rev() {
        let l = line.trim_start();
        if l.starts_with("///") {
            doc.push(l);
        } else if l.starts_with("#[") {
            continue;
        } else {
            break;
        }
    }
    doc.reverse();
    Some(doc.join("\n"))
}

#[test]
fn every_element_class_documents_ports_arguments_handlers_and_an_example() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src/elements"), &mut files);
    let drivers = root.join("../nf-drivers/src");
    if drivers.is_dir() {
        rust_files(&drivers, &mut files);
    }
    let mut classes = 0;
    let mut missing = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).unwrap();
        for part in src.split("impl ElementClass for ").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            classes += 1;
            let doc = struct_doc(&src, &name).unwrap_or_default();
            for section in ["# Ports", "# Arguments", "# Handlers", "# Example"] {
                if !doc.contains(&format!("/// {section}")) {
                    missing.push(format!("{}: {name} lacks `{section}`", f.display()));
                }
            }
            if !doc.contains("/// ```") {
                missing.push(format!("{}: {name}'s example has no code", f.display()));
            }
        }
    }
    assert!(classes >= 40, "found only {classes} element classes");
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
