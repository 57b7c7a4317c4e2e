//! The command line's grammar: the subcommands and their flags (the
//! sidecar's own flags are [`Flags`], the option table's). `main.rs`
//! parses it and calls the library.

use clap::{Parser, Subcommand};

use crate::config::Flags;

#[derive(Parser, Debug)]
#[command(
    name = "rolecall",
    version,
    about = "Publishes AWS role sessions for a pod's service-account token as named profiles",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub flags: Flags,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Keep every profile fresh until SIGTERM (the default)
    Run(Flags),
    /// Assume every profile once, write the outputs and exit
    Once(Flags),
    /// Validate the configuration, decode the token and print the trust
    /// policy each role needs; with --issuer, without a token (before the
    /// first deploy)
    Check {
        /// Also call STS once per profile (writes nothing)
        #[arg(long)]
        assume: bool,
        #[command(flatten)]
        issuer: Box<crate::check::issuer::IssuerArgs>,
        #[command(flatten)]
        flags: Flags,
    },
    /// Show the profiles in an output directory: role, expiry, last refresh,
    /// last error. Without --output-dir, every output set of the sidecar
    /// in this container (asked through its control socket), else
    /// ROLECALL_OUTPUT_DIR or /aws
    Status {
        /// The output directory [env: ROLECALL_OUTPUT_DIR; default: each set's, then /aws]
        #[arg(long, value_name = "DIR")]
        output_dir: Option<std::path::PathBuf>,
        /// Print the status as JSON (with several output sets, a list of
        /// them)
        #[arg(long)]
        json: bool,
        /// The sidecar's control socket, asked for its output sets [env: ROLECALL_CONTROL_SOCKET; default: /run/rolecall/control.sock]
        #[arg(long, value_name = "PATH")]
        control_socket: Option<std::path::PathBuf>,
    },
    /// Make the running sidecar in this container re-read its configuration
    /// (as SIGHUP does) and print what changed
    Reload {
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Make the running sidecar refresh every profile, or one, now (at most
    /// once per profile every 5 s) and print each result
    Refresh {
        /// Only this profile
        #[arg(long, value_name = "NAME")]
        profile: Option<String>,
        #[command(flatten)]
        control: ControlArgs,
    },
    /// Add the rolecall sidecar to the workloads of YAML manifests, as
    /// their rolecall.dev/ label and annotations ask (docs/INJECTION.md);
    /// the manifests on stdout, a report on stderr
    #[cfg(feature = "inject")]
    Inject {
        /// A manifest file, a directory (its *.yaml, *.yml and *.json
        /// files) or - for stdin (repeatable) [default: -]
        #[arg(short = 'f', long = "filename", value_name = "PATH")]
        filenames: Vec<std::path::PathBuf>,
        /// The rolecall image, unless an object's rolecall.dev/image names one [default: localhost/rolecall:dev]
        #[arg(long, value_name = "IMAGE")]
        image: Option<String>,
    },
    /// Remove what `rolecall inject` added, as each object's
    /// rolecall.dev/status records it
    #[cfg(feature = "inject")]
    Uninject {
        /// A manifest file, a directory (its *.yaml, *.yml and *.json
        /// files) or - for stdin (repeatable) [default: -]
        #[arg(short = 'f', long = "filename", value_name = "PATH")]
        filenames: Vec<std::path::PathBuf>,
    },
    /// Serve the mutating admission webhook: pods created with the
    /// rolecall.dev/inject label get the sidecar, as `rolecall inject`
    /// adds it (docs/WEBHOOK.md)
    #[cfg(feature = "inject")]
    Webhook(crate::webhook::Flags),
    /// Inject as a KRM function (kustomize, kpt): a ResourceList on stdin,
    /// the ResourceList with every item injected and its results on stdout
    #[cfg(feature = "inject")]
    Krm,
    /// Print credential_process JSON for a profile (run by the AWS SDKs)
    CredentialProcess {
        /// The profile to print
        #[arg(long)]
        profile: String,
        /// The output dir [default: the directory holding this helper, then
        /// ROLECALL_OUTPUT_DIR, then /aws]
        #[arg(long, value_name = "DIR")]
        output_dir: Option<std::path::PathBuf>,
    },
}

/// How `reload` and `refresh` reach the sidecar.
#[derive(clap::Args, Debug)]
pub struct ControlArgs {
    /// The sidecar's control socket [env: ROLECALL_CONTROL_SOCKET; default: /run/rolecall/control.sock]
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<std::path::PathBuf>,
    /// Print the sidecar's answer as JSON
    #[arg(long)]
    pub json: bool,
}
