//! Tables of cases run by one test: every case runs to its end, and the
//! test fails naming each case that failed.

/// Runs `check` on every case of a table, each to its end even when an
/// earlier one failed, then panics naming every case that failed (each
/// case's own panic message, printed as it happened, says what went wrong
/// and names the case too).
pub fn run_cases<C>(cases: &[C], name: impl Fn(&C) -> &str, check: impl Fn(&C)) {
    assert!(!cases.is_empty(), "an empty table of cases");
    let failed: Vec<&str> = cases
        .iter()
        .filter(|c| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(c))).is_err())
        .map(&name)
        .collect();
    assert_no_case_failed(&failed, cases.len());
}

/// [`run_cases`] for async checks: each case runs as a task of the test's
/// runtime (a panic fails that case only), one after the other.
pub async fn run_cases_async<C, F>(
    cases: &'static [C],
    name: impl Fn(&C) -> &str,
    check: impl Fn(&'static C) -> F,
) where
    C: Sync,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    assert!(!cases.is_empty(), "an empty table of cases");
    let mut failed = Vec::new();
    for case in cases {
        if tokio::spawn(check(case)).await.is_err() {
            failed.push(name(case));
        }
    }
    assert_no_case_failed(&failed, cases.len());
}

fn assert_no_case_failed(failed: &[&str], total: usize) {
    assert!(
        failed.is_empty(),
        "{} of {total} cases failed: {}",
        failed.len(),
        failed.join("; ")
    );
}
