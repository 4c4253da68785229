//! Deadline-based polling.
//!
//! Daemons become ready asynchronously, and the machines that run the tests
//! are small and busy, so a fixed sleep is either too short (flaky) or too
//! long (slow). Everything in this crate waits for an observable condition
//! instead, polling it until a deadline, and says what it was waiting for
//! when the deadline passes.

use std::time::{Duration, Instant};

/// How often conditions are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `cond` every ~20 ms until it returns `Some`, or `timeout` passes.
///
/// `cond` is always called at least once, and once more after the deadline,
/// so a condition that became true during the last sleep is not missed. On
/// timeout the error names `what`.
pub fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = cond() {
            return Ok(value);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}

/// Like [`wait_until`] for a condition that is a plain `bool`.
pub fn wait_for(
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) -> Result<(), String> {
    wait_until(timeout, what, || cond().then_some(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_value_once_condition_holds() {
        let mut calls = 0;
        let got = wait_until(Duration::from_secs(2), "third call", || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(got, Ok(3));
    }

    #[test]
    fn times_out_with_description() {
        let err = wait_for(Duration::from_millis(50), "never", || false).unwrap_err();
        assert!(err.contains("never"), "{err}");
    }
}
