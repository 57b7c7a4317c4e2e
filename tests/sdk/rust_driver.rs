//! One long-lived STS client from the AWS SDK for Rust, built the way an
//! application builds it (`aws_config::defaults`, the default credential
//! chain), driven over stdin: each line makes one GetCallerIdentity call and
//! prints "ok ARN" or "err MESSAGE". Used by the SDK matrix tests.

use std::io::BufRead;

use aws_config::BehaviorVersion;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let endpoint = std::env::args().nth(1).expect("usage: sdk_driver ENDPOINT");
    let http = aws_smithy_http_client::Builder::new().build_http();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region("eu-west-1")
        .endpoint_url(endpoint)
        .http_client(http)
        .load()
        .await;
    let client = aws_sdk_sts::Client::new(&config);
    println!("ready");
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    std::thread::spawn(move || {
        for _ in std::io::stdin().lock().lines() {
            if tx.blocking_send(()).is_err() {
                return;
            }
        }
    });
    while rx.recv().await.is_some() {
        match client.get_caller_identity().send().await {
            Ok(out) => println!("ok {}", out.arn().unwrap_or_default()),
            Err(e) => println!(
                "err {}",
                aws_smithy_types::error::display::DisplayErrorContext(&e)
                    .to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        }
    }
}
