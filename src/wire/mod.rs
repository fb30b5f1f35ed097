//! The wire leaf: what every source and exchange needs to talk HTTP and report what came back.
//!
//! Sources (`source/`) and targets (`exchange/`) both call Google and AWS endpoints; the helpers
//! they share live here, below both, so that neither imports the other for a helper. Nothing in
//! this module knows about a flow: it imports only the other leaves.

pub mod http;
pub mod iam_credentials;
pub mod roots;
pub mod sigv4;

/// The error and its causes on one line: reqwest's top-level message alone hides the reason.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A one-line excerpt of what an upstream said (an HTML error page, a command's stderr), at
/// most `max` bytes, so messages and log lines stay readable.
pub fn truncate(text: &str, max: usize) -> String {
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Google APIs answer `{"error": {"message": ...}}`; OAuth answers `{"error_description": ...}`.
pub fn google_error_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let message = parsed.as_ref().and_then(|v| {
        v.pointer("/error/message")
            .or_else(|| v.get("error_description"))
            .or_else(|| v.get("error"))
            .and_then(|m| m.as_str())
            .map(str::to_string)
    });
    message.unwrap_or_else(|| truncate(body, 300))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_one_bounded_line() {
        assert_eq!(
            truncate("<html>\n  <h1>502</h1>\n</html>", 100),
            "<html> <h1>502</h1> </html>"
        );
        assert_eq!(truncate("ééé", 3), "é…");
    }

    #[test]
    fn google_error_documents_and_oauth_errors_are_read() {
        assert_eq!(
            google_error_message(r#"{"error":{"message":"denied"}}"#),
            "denied"
        );
        assert_eq!(
            google_error_message(r#"{"error":"invalid_grant","error_description":"expired"}"#),
            "expired"
        );
        assert_eq!(
            google_error_message("<html>oops</html>"),
            "<html>oops</html>"
        );
    }
}
