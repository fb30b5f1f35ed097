//! AWS trust policies: the model, the evaluator (AWS condition semantics) and the issuers'
//! condition-key mappings (Google's, any OIDC issuer's); and, for the other direction, the CEL subset of workload identity
//! provider conditions and the AWS provider's attribute mapping. Shared by the lab, the linter
//! and the doctor.
//!
//! One evaluator everywhere means the lab refuses exactly what `keyless doctor` explains and the
//! linter warns about; a second, slightly different reading of a policy would make them disagree.

pub mod cel;
pub mod evaluate;
pub mod glob;
pub mod google;
pub mod issuer;
pub mod lint;
pub mod model;
pub mod workload_identity;

pub use evaluate::{
    evaluate, ConditionContext, ConditionFailure, Decision, Request, RequestPrincipal,
};
pub use model::{
    ActionMatcher, Condition, ConditionOperator, Effect, OperatorBase, PolicyDocument, PolicyError,
    Principal, SetQualifier, Statement,
};
