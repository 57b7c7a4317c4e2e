//! The notes `check` prints after the profiles for the publication modes
//! that break some applications: file mode for long-lived SDK clients,
//! process mode for an image without a shell.

use crate::config::{Config, CredentialsMode};

/// One line per risky mode in use, naming its profiles; empty when none.
pub fn notes(config: &Config) -> Vec<String> {
    // The internal base of pod-identity is published nowhere.
    let published = |p: &&crate::config::Profile| match &config.identity {
        crate::config::Identity::PodIdentity(pod) => !p.pod_identity || pod.published,
        crate::config::Identity::WebIdentity => true,
    };
    let named = |mode| {
        config
            .profiles
            .iter()
            .filter(published)
            .filter(|p| p.credentials == mode)
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = Vec::new();
    let file = named(CredentialsMode::File);
    if !file.is_empty() {
        out.push(format!(
            "note: file mode ({file}): long-lived SDK clients — boto3, JS v3, Rust, Go — keep the first keys they read and fail once that session expires; use process (the default) or endpoint for services; file is right for the AWS CLI and jobs"
        ));
    }
    let process = named(CredentialsMode::Process);
    if !process.is_empty() {
        out.push(format!(
            "note: process mode ({process}): the Go SDK and the Rust SDK run credential_process through /bin/sh; an application image without a shell needs endpoint mode"
        ));
    }
    out
}

/// [`notes`] as the text printed after the profiles: a blank line, then
/// the notes; empty when there are none.
pub fn text(config: &Config) -> String {
    let notes = notes(config);
    if notes.is_empty() {
        return String::new();
    }
    format!("\n{}\n", notes.join("\n"))
}
