//! AWS trust policies: the model, the evaluator (AWS condition semantics) and the Google
//! condition-key mapping, shared by the lab, the linter and the doctor.
