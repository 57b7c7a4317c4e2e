//! The AWS SDK for Rust reading rolecall's profiles by name.
//!
//! Run with AWS_SHARED_CREDENTIALS_FILE=/aws/credentials and
//! AWS_CONFIG_FILE=/aws/config. The SDK reads the files once, when the config
//! is loaded: a long-lived client should use rolecall's process mode
//! (`--credentials process`), with which it re-runs `credential_process` as
//! its credentials near expiry.

use aws_sdk_sts::Client;

#[tokio::main]
async fn main() -> Result<(), aws_sdk_sts::Error> {
    for profile in ["reader", "writer"] {
        // Or leave out profile_name() and set AWS_PROFILE.
        let config = aws_config::from_env().profile_name(profile).load().await;
        let identity = Client::new(&config).get_caller_identity().send().await?;
        println!("{profile}: {}", identity.arn().unwrap_or("-"));
    }
    Ok(())
}
