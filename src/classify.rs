//! What kind of failure an error is, decided once beside each error type, and the exit code each
//! kind gets.
//!
//! Scripts and supervisors act on the exit code (DESIGN.md): retry later, fix the configuration,
//! or fix the trust policy. This module is a leaf so every layer can say which its errors are.

/// Process exit codes, so scripts can tell a refusal from an outage.
pub mod exit_code {
    /// Something else failed (bad input, unreadable files).
    pub const FAILURE: i32 = 1;
    /// The command line or configuration is wrong (clap uses 2 as well).
    pub const USAGE: i32 = 2;
    /// The other cloud refused the identity (trust policy, token rejected).
    pub const REFUSED: i32 = 3;
    /// An endpoint was unreachable or kept failing; trying later may work.
    pub const UNAVAILABLE: i32 = 4;
}

/// What kind of failure an error is: what a script or supervisor should do about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Something else failed (bad input, unreadable files): exit 1.
    Failure,
    /// The command line or configuration is wrong; fix it, retrying will not help: exit 2.
    Usage,
    /// The other cloud refused the identity (trust policy, token rejected): exit 3.
    Refused,
    /// An endpoint was unreachable or kept failing; trying later may work: exit 4.
    Unavailable,
}

impl Class {
    /// The process exit code for this kind of failure.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Failure => exit_code::FAILURE,
            Self::Usage => exit_code::USAGE,
            Self::Refused => exit_code::REFUSED,
            Self::Unavailable => exit_code::UNAVAILABLE,
        }
    }
}

/// An error that knows what kind of failure it is; implemented beside each error type, so the
/// decision lives with the variants it is about.
pub trait Classify {
    /// What kind of failure this is.
    fn class(&self) -> Class;
}

/// Recognises one error type in an error chain: see [`of`].
pub type Classifier = fn(&(dyn std::error::Error + 'static)) -> Option<Class>;

/// The [`Classifier`] for `E`: `Some(class)` when the cause is an `E`.
pub fn of<E: Classify + std::error::Error + 'static>(
    cause: &(dyn std::error::Error + 'static),
) -> Option<Class> {
    cause.downcast_ref::<E>().map(Classify::class)
}

/// The class of the outermost cause in `chain` that one of `classifiers` recognises;
/// [`Class::Failure`] when none does.
pub fn class_of<'a>(
    chain: impl IntoIterator<Item = &'a (dyn std::error::Error + 'static)>,
    classifiers: &[Classifier],
) -> Class {
    chain
        .into_iter()
        .find_map(|cause| classifiers.iter().find_map(|recognise| recognise(cause)))
        .unwrap_or(Class::Failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner")]
    struct Inner;

    impl Classify for Outer {
        fn class(&self) -> Class {
            Class::Refused
        }
    }

    impl Classify for Inner {
        fn class(&self) -> Class {
            Class::Unavailable
        }
    }

    fn chain<'a>(
        error: &'a (dyn std::error::Error + 'static),
    ) -> Vec<&'a (dyn std::error::Error + 'static)> {
        std::iter::successors(Some(error), |e| e.source()).collect()
    }

    #[test]
    fn the_outermost_recognised_cause_decides() {
        let error = Outer(Inner);
        assert_eq!(
            class_of(chain(&error), &[of::<Inner>, of::<Outer>]),
            Class::Refused
        );
        assert_eq!(class_of(chain(&error), &[of::<Inner>]), Class::Unavailable);
        assert_eq!(class_of(chain(&error), &[]), Class::Failure);
        let usage = [
            Class::Failure,
            Class::Usage,
            Class::Refused,
            Class::Unavailable,
        ];
        assert_eq!(usage.map(Class::exit_code), [1, 2, 3, 4]);
    }
}
