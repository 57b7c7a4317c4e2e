//! `check --assume` under pod-identity: the agent once, then one
//! `AssumeRole` per role profile with its source's session.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::Setup;
use crate::agent::Agent;
use crate::check::{Call, Report};
use crate::clock::Clock;
use crate::config::{Config, PodIdentity};
use crate::session::{Session, format_time};
use crate::sts::Sts;
use crate::token::{self, Claims};

/// `check` under pod-identity: the report at `clock`'s time; with
/// `assume`, one agent call and one `AssumeRole` per role profile.
pub async fn check(
    config: &Config,
    pod: &PodIdentity,
    assume: bool,
    sts: &Sts,
    clock: Clock,
) -> Report {
    let now = clock.now();
    let token = match token::read_unchecked(&config.token_file) {
        Ok(t) => t,
        Err(e) => {
            let empty = Claims::default();
            let mut text = Setup::new(config, pod, &empty, None, None).head();
            let _ = writeln!(text, "The Pod Identity token cannot be used: {e}.");
            return Report { text, ok: false };
        }
    };
    let sendable = token::read(&config.token_file, now).is_ok();
    let mut answers = HashMap::new();
    let mut ok = true;
    let mut account = None;
    if assume {
        let call = Call {
            sts,
            token: &token,
            sendable,
        };
        let asked = ask(config, pod, &call, &mut answers).await;
        ok &= asked.0;
        account = asked.1;
    }
    let setup = Setup::new(config, pod, &token.claims, None, account.as_deref());
    let (text, claims_ok) = setup.text(&token.claims, Some(now), &answers);
    Report {
        text,
        ok: ok && claims_ok,
    }
}

/// The agent once, then each role profile with its source's session: each
/// profile's answer line by name; whether all worked, and the agent's
/// account.
async fn ask(
    config: &Config,
    pod: &PodIdentity,
    call: &Call<'_>,
    answers: &mut HashMap<String, String>,
) -> (bool, Option<String>) {
    let mut ok = true;
    let mut account = None;
    let mut sessions: Vec<(String, Session)> = Vec::new();
    for p in config.order() {
        let mut line = String::new();
        if p.pod_identity {
            match ask_agent(pod, call).await {
                Ok((session, acct)) => {
                    let _ = writeln!(
                        line,
                        "  agent: OK, account {}, session until {}",
                        acct.as_deref().unwrap_or("(not said)"),
                        format_time(session.expiration)
                    );
                    sessions.push((p.name.clone(), session));
                    account = acct;
                }
                Err(why) => {
                    line = why;
                    ok = false;
                }
            }
        } else {
            ok &= call.assume(&mut line, p, &mut sessions).await;
        }
        answers.insert(p.name.clone(), line);
    }
    (ok, account)
}

/// One agent call: its session and account, or the lines saying why not.
async fn ask_agent(
    pod: &PodIdentity,
    call: &Call<'_>,
) -> Result<(Session, Option<String>), String> {
    if !call.sendable {
        return Err("  agent: skipped, an expired token is never sent to the agent\n".into());
    }
    let agent = Agent::new(&pod.endpoint);
    match agent.fetch_answer(call.token.expose()).await {
        Ok(a) => Ok((a.assumed.session, a.account_id)),
        Err(e) => {
            let mut out = format!(
                "  agent: FAILED ({}) {}: {}\n",
                e.class.as_str(),
                e.code,
                e.message
            );
            let claims = Some(&call.token.claims);
            if let Some(h) = crate::agent::hint(&e.code, &pod.endpoint, claims) {
                let _ = writeln!(out, "  fix: {h}");
            }
            Err(out)
        }
    }
}
