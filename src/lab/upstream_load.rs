//! The lab as a loaded upstream: a fixed latency, a count of the calls in flight, and throttling
//! above a concurrency threshold.
//!
//! On loopback the lab answers in well under a millisecond, so a thousand profiles starting
//! together look harmless against it; a real STS is 20–100 ms away and throttles (`Throttling`,
//! HTTP 400) when an account sends too much at once. `upstream_latency` puts the distance back
//! (the scale benchmark uses 50 ms), [`UpstreamLoad::most_in_flight`] says how many calls a client
//! had open at once (`most_upstream_calls_in_flight` in the stats), and `throttle_above` answers
//! the way AWS STS (`Throttling`, 400) and Google (`RESOURCE_EXHAUSTED`, 429) do when more calls
//! than that are in flight. Only upstream calls count: AWS STS actions, Google STS `/v1/token`,
//! IAM Credentials `generate*` — not the metadata servers or the lab's admin API.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::response::Response;

use super::faults::LabService;
use super::state::LabState;

/// Upstream calls in flight now, and the most at once since the lab started.
#[derive(Debug, Default)]
pub(crate) struct UpstreamLoad {
    in_flight: AtomicU64,
    most: AtomicU64,
}

/// One call in flight; dropping it ends the call.
#[derive(Debug)]
pub(crate) struct InFlight<'a>(&'a UpstreamLoad);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl UpstreamLoad {
    /// Counts a call in until the returned guard drops; returns it with the number in flight
    /// (this one included).
    pub fn enter(&self) -> (InFlight<'_>, u64) {
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.most.fetch_max(now, Ordering::AcqRel);
        (InFlight(self), now)
    }

    /// Calls in flight now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// The most calls that were in flight at once.
    pub fn most_in_flight(&self) -> u64 {
        self.most.load(Ordering::Acquire)
    }

    /// Starts counting the most in flight again from now (`POST /_lab/stats/reset-in-flight`).
    pub fn reset_most(&self) {
        self.most.store(self.in_flight(), Ordering::Release);
    }
}

/// Paces one upstream call: counts it in flight for as long as the guard lives, waits the
/// configured latency, and answers with the service's throttling error when more calls than
/// `throttle_above` are in flight (the caller returns that answer instead of its own).
pub(crate) async fn pace(
    state: &LabState,
    service: LabService,
) -> (InFlight<'_>, Option<Response>) {
    let (call, in_flight) = state.upstream_load.enter();
    let latency = state.config.upstream_latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let throttled = state
        .config
        .throttle_above
        .is_some_and(|limit| in_flight > u64::from(limit));
    if throttled {
        super::state::Counters::bump(&state.counters.throttled);
        return (call, Some(throttled_response(service)));
    }
    (call, None)
}

/// What the service answers when it throttles: AWS's `Throttling` (HTTP 400, "Rate exceeded"),
/// Google's `RESOURCE_EXHAUSTED` (HTTP 429).
pub(crate) fn throttled_response(service: LabService) -> Response {
    match service {
        LabService::AwsSts | LabService::Cloudtrail => super::sts_xml::error_response(
            400,
            "Throttling",
            "Rate exceeded",
            &super::ids::request_id(),
        ),
        LabService::GoogleApis | LabService::Metadata | LabService::CloudLogging => {
            super::google_apis::google_error(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded: too many requests in flight (the keyless lab's throttle_above).",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_in_flight_is_the_high_water_mark() {
        let load = UpstreamLoad::default();
        let (a, one) = load.enter();
        let (b, two) = load.enter();
        assert_eq!((one, two), (1, 2));
        drop(a);
        let (c, again) = load.enter();
        assert_eq!(again, 2);
        drop((b, c));
        assert_eq!((load.in_flight(), load.most_in_flight()), (0, 2));
        load.reset_most();
        assert_eq!(load.most_in_flight(), 0);
    }
}
