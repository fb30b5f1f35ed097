//! AWS-style wildcard matching (`*` = any run of characters, `?` = exactly one).
//!
//! Used by `Action` matching and the `StringLike` operators. IAM globs have no escapes and no
//! character classes, so a tiny iterative matcher is both simpler and faster than pulling in a
//! general glob crate whose path semantics (`/`, `**`) differ from IAM's.

/// True when `text` matches `pattern`; `ignore_case` folds both sides (actions are
/// case-insensitive in IAM, condition values are not).
pub fn matches(pattern: &str, text: &str, ignore_case: bool) -> bool {
    let fold = |s: &str| -> Vec<char> {
        if ignore_case {
            s.to_lowercase().chars().collect()
        } else {
            s.chars().collect()
        }
    };
    let (p, t) = (fold(pattern), fold(text));
    // Classic greedy matcher with one backtrack point for the most recent `*`.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn star_and_question_mark() {
        assert!(matches("sts:*", "sts:AssumeRoleWithWebIdentity", false));
        assert!(matches("*", "", false));
        assert!(matches("a?c", "abc", false));
        assert!(!matches("a?c", "ac", false));
        assert!(matches("*@example.com", "dev@example.com", false));
        assert!(!matches("*@example.com", "dev@example.com.evil", false));
        assert!(matches("a*b*c", "aXXbYYc", false));
        assert!(!matches("a*b*c", "aXXbYY", false));
        assert!(matches("100*", "100000000000000000001", false));
    }

    #[test]
    fn case_folding_is_opt_in() {
        assert!(!matches("STS:assume*", "sts:AssumeRole", false));
        assert!(matches("STS:assume*", "sts:AssumeRole", true));
    }

    #[test]
    fn no_wildcard_means_exact() {
        assert!(matches("abc", "abc", false));
        assert!(!matches("abc", "abcd", false));
        assert!(!matches("abcd", "abc", false));
    }
}
