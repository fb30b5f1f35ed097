//! What happened inside one exchange, gathered where it happens.
//!
//! The calls to the target (with their request ids), the identity the source presented and the
//! session name are known deep in `exchange/`, while the event is written by whoever started the
//! exchange (`refresh/`). Rather than thread a recorder through every signature, the exchange is
//! run inside [`collect`], and the code that makes a call reports it with [`record_call`]: a
//! task-local scope, so concurrent exchanges (the daemon's profiles) never mix their calls.
//! Outside a scope the reports go nowhere (a library caller of `exchange_web_identity`).

use std::cell::RefCell;
use std::future::Future;

use super::event::{AuditSource, UpstreamCall};

/// What one exchange reported while it ran.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Every call to the target, retries included, in order.
    pub calls: Vec<UpstreamCall>,
    /// The identity presented (the last one noted: a re-minted token replaces the first).
    pub source: Option<AuditSource>,
    /// The role session name sent to AWS STS.
    pub session_name: Option<String>,
}

tokio::task_local! {
    static SCOPE: RefCell<Recorded>;
}

/// Runs `exchange` and returns what it reported. An inner `collect` keeps its own reports.
pub async fn collect<F: Future>(exchange: F) -> (F::Output, Recorded) {
    SCOPE
        .scope(RefCell::new(Recorded::default()), async {
            let output = exchange.await;
            let recorded = SCOPE.with(|scope| scope.take());
            (output, recorded)
        })
        .await
}

/// Reports one call to the target.
pub fn record_call(call: UpstreamCall) {
    let _ = SCOPE.try_with(|scope| scope.borrow_mut().calls.push(call));
}

/// Reports the identity the source presented.
pub fn note_source(source: AuditSource) {
    let _ = SCOPE.try_with(|scope| scope.borrow_mut().source = Some(source));
}

/// Reports the role session name sent.
pub fn note_session(name: &str) {
    let _ = SCOPE.try_with(|scope| scope.borrow_mut().session_name = Some(name.to_string()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(action: &str) -> UpstreamCall {
        UpstreamCall {
            service: super::super::event::AWS_STS.into(),
            action: action.into(),
            request_id: Some(format!("id-{action}")),
            status: Some(200),
            error_code: None,
        }
    }

    #[tokio::test]
    async fn calls_land_in_their_own_scope_only() {
        record_call(call("outside"));
        let ((), outer) = collect(async {
            record_call(call("AssumeRoleWithWebIdentity"));
            note_session("s1");
            let ((), inner) = collect(async { record_call(call("inner")) }).await;
            assert_eq!(inner.calls, vec![call("inner")]);
            tokio::task::yield_now().await;
            record_call(call("AssumeRole"));
        })
        .await;
        assert_eq!(
            outer.calls,
            vec![call("AssumeRoleWithWebIdentity"), call("AssumeRole")]
        );
        assert_eq!(outer.session_name.as_deref(), Some("s1"));
    }

    #[tokio::test]
    async fn concurrent_exchanges_do_not_mix() {
        let a = collect(async {
            for _ in 0..3 {
                record_call(call("a"));
                tokio::task::yield_now().await;
            }
        });
        let b = collect(async {
            for _ in 0..2 {
                record_call(call("b"));
                tokio::task::yield_now().await;
            }
        });
        let (((), a), ((), b)) = tokio::join!(a, b);
        assert_eq!(a.calls, vec![call("a"); 3]);
        assert_eq!(b.calls, vec![call("b"); 2]);
    }
}
