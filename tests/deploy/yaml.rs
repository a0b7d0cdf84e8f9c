//! Reading YAML documents (compose output, Helm values) and finding things in them.

use yaml_rust2::{Yaml, YamlLoader};

/// The single YAML document in `text`; `origin` names it in failures.
pub fn parse(text: &str, origin: &str) -> Yaml {
    let mut documents = YamlLoader::load_from_str(text)
        .unwrap_or_else(|error| panic!("{origin} is not valid YAML: {error}"));
    assert_eq!(documents.len(), 1, "{origin}: expected one YAML document");
    documents.remove(0)
}

/// The node at a dotted key path (`image.tag`), or `None` when a key is missing.
pub fn at<'a>(node: &'a Yaml, path: &str) -> Option<&'a Yaml> {
    path.split('.').try_fold(node, |node, key| {
        let child = &node[key];
        (!child.is_badvalue()).then_some(child)
    })
}

/// A scalar as text, the way a shell or a config loader would see it.
pub fn scalar(node: &Yaml) -> Option<String> {
    match node {
        Yaml::String(text) | Yaml::Real(text) => Some(text.clone()),
        Yaml::Integer(number) => Some(number.to_string()),
        Yaml::Boolean(flag) => Some(flag.to_string()),
        Yaml::Null => Some(String::new()),
        _ => None,
    }
}

/// The scalar at `path`; panics naming the path when it is missing or not a scalar.
pub fn scalar_at(node: &Yaml, path: &str) -> String {
    at(node, path)
        .and_then(scalar)
        .unwrap_or_else(|| panic!("no scalar value at `{path}`"))
}

/// The keys of a mapping, as text (empty for anything else).
pub fn keys(node: &Yaml) -> Vec<String> {
    match node {
        Yaml::Hash(hash) => hash.keys().filter_map(scalar).collect(),
        _ => Vec::new(),
    }
}

/// Every key path in a mapping, intermediate ones included (`a`, `a.b`, `a.b.c`); lists are
/// leaves.
pub fn key_paths(node: &Yaml) -> Vec<String> {
    let mut paths = Vec::new();
    collect_key_paths(node, "", &mut paths);
    paths
}

fn collect_key_paths(node: &Yaml, prefix: &str, paths: &mut Vec<String>) {
    for key in keys(node) {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        paths.push(path.clone());
        collect_key_paths(&node[key.as_str()], &path, paths);
    }
}

/// A list of scalars (a compose command, a profile list); a single string is one element.
pub fn strings(node: &Yaml) -> Vec<String> {
    match node {
        Yaml::Array(items) => items.iter().filter_map(scalar).collect(),
        Yaml::String(text) => vec![text.clone()],
        _ => Vec::new(),
    }
}
