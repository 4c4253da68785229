//! Pause points for fault tests: with `SWITCHYARD_TEST_PAUSE_AT=<point>` in
//! its environment the agent stops at that named point of an operation,
//! logs it and never goes on, so that a test can kill it there on purpose
//! (a timing trick could not make that interleaving happen every time).
//! Without the variable, a point costs one environment lookup.
//!
//! Points:
//! - [`TEARDOWN_BETWEEN_OVS_AND_VETH`]: a DEL (or GC) removed the pod's
//!   OVS port and has not deleted its veth yet.

use tracing::warn;

/// The environment variable naming the point to stop at.
pub const PAUSE_ENV: &str = "SWITCHYARD_TEST_PAUSE_AT";

/// In a teardown, after the OVS ports went and before the veths go.
pub const TEARDOWN_BETWEEN_OVS_AND_VETH: &str = "teardown-between-ovs-and-veth";

/// The line logged when an operation stops at a point (tests look for it).
pub const PAUSED: &str = "paused at a test pause point until killed";

/// Never returns when the environment names `point`; returns at once
/// otherwise.
pub async fn pause_point(point: &'static str) {
    if std::env::var(PAUSE_ENV).is_ok_and(|p| p == point) {
        warn!(point, "{PAUSED}");
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_points_the_environment_does_not_name() {
        // Not set in the test environment: returns at once.
        assert!(std::env::var(PAUSE_ENV).is_err());
        pause_point(TEARDOWN_BETWEEN_OVS_AND_VETH).await;
    }
}
