//! AWS trust policies: the model, the evaluator (AWS condition semantics) and the Google
//! condition-key mapping, shared by the lab, the linter and the doctor.
//!
//! One evaluator everywhere means the lab refuses exactly what `keyless doctor` explains and the
//! linter warns about; a second, slightly different reading of a policy would make them disagree.

pub mod evaluate;
pub mod glob;
pub mod google;
pub mod model;

pub use evaluate::{
    evaluate, ConditionContext, ConditionFailure, Decision, Request, RequestPrincipal,
};
pub use model::{
    ActionMatcher, Condition, ConditionOperator, Effect, OperatorBase, PolicyDocument, PolicyError,
    Principal, SetQualifier, Statement,
};
