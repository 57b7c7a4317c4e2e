use super::*;
use crate::config::options::Layer;

/// A layer with `pairs` set, each as if by its flag.
pub(crate) fn values(pairs: &[(&'static str, &str)]) -> Layer {
    let mut layer = Layer::default();
    for (k, v) in pairs {
        let (slot, _) = layer.slot(k, false).expect("a table key");
        *slot = Some(src(*v, format!("--{k}")));
    }
    layer
}

/// The globals of `layer`, with the files it names read.
pub(crate) fn check(layer: &Layer) -> (Globals, Problems) {
    let tokens = std::iter::once(&layer.endpoint_token_file);
    layer.globals(Loaded::read(&layer.ca_bundle, &layer.endpoint_addr, tokens))
}

#[test]
fn nothing_set_gives_the_defaults() {
    let (g, p) = check(&Layer::default());
    assert!(p.lines().is_empty());
    assert_eq!(g.config.token_file, PathBuf::from(DEFAULT_TOKEN_FILE));
    assert_eq!(g.config.output_dir, PathBuf::from(DEFAULT_OUTPUT_DIR));
    assert_eq!(g.config.app_output_dir, PathBuf::from(DEFAULT_OUTPUT_DIR));
    assert_eq!(g.config.file_mode, DEFAULT_FILE_MODE);
    assert_eq!(
        g.config.health_addr,
        Some(DEFAULT_HEALTH_ADDR.parse().unwrap())
    );
    assert_eq!((g.config.endpoint_addr, g.endpoint_set), (None, false));
    assert_eq!(g.config.log_format, LogFormat::Text);
}

#[test]
fn inherited_defaults_are_passed_on_unchecked() {
    let (_, p) = check(&values(&[
        ("region", "Not A Region"),
        ("duration_seconds", "5"),
    ]));
    assert!(p.lines().is_empty());
}

#[test]
fn each_global_is_checked_once_in_table_order() {
    let (g, p) = check(&values(&[
        ("log_format", "xml"),
        ("file_mode", "0644"),
        ("output_dir", ""),
        ("health_addr", " "),
        ("endpoint_addr", "10.0.0.1:1"),
    ]));
    assert_eq!(
        p.lines(),
        [
            "--output_dir: must be a non-empty path without control characters",
            "--file_mode: mode 0644 makes the credentials readable by every user: use 0640 with a shared fsGroup for the application container, or pass --allow-world-readable (ROLECALL_ALLOW_WORLD_READABLE=true, `allow_world_readable: true`) if every user of the pod may hold them",
            "--endpoint_addr: 10.0.0.1:1 is not a loopback address: the credentials endpoint must only be reachable inside the pod (use 127.0.0.1:PORT)",
            "--log_format: \"xml\" is not a log format: use text or json",
        ]
    );
    assert_eq!(g.config.health_addr, None, "blank disables the listener");
    assert!(g.endpoint_set && g.config.endpoint_addr.is_none());
}

#[test]
fn the_app_output_dir_defaults_to_the_output_dir_and_must_be_absolute() {
    let (g, _) = check(&values(&[("output_dir", "/out")]));
    assert_eq!(g.config.app_output_dir, PathBuf::from("/out"));
    let (_, p) = check(&values(&[("app_output_dir", "rel")]));
    assert_eq!(p.lines().len(), 1);
}

#[test]
fn an_endpoint_token_file_needs_the_endpoint() {
    let (_, p) = check(&values(&[("endpoint_token_file", "/t")]));
    let m = p.lines();
    assert_eq!(m.len(), 1);
    assert!(m[0].contains("set endpoint_addr"), "{m:?}");
    let (_, p) = check(&values(&[
        ("endpoint_addr", "127.0.0.1:9912"),
        ("endpoint_token_file", "/does/not/exist"),
    ]));
    let m = p.lines();
    assert!(m.len() == 1 && m[0].contains("does not exist"), "{m:?}");
}
