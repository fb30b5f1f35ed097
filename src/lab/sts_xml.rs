//! The XML documents AWS STS answers with (query protocol), byte-for-byte in AWS's shape, because
//! the SDKs parse them strictly: a wrong namespace or element order breaks real clients.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use quick_xml::escape::partial_escape as escape;

/// The STS XML namespace.
pub const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// An AWS error answer: `<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>`.
pub fn error_response(status: u16, code: &str, message: &str, request_id: &str) -> Response {
    xml(
        status,
        error_body(status, code, message, request_id),
        request_id,
    )
}

/// The body of [`error_response`].
pub fn error_body(status: u16, code: &str, message: &str, request_id: &str) -> String {
    let kind = if status >= 500 { "Receiver" } else { "Sender" };
    format!(
        "<ErrorResponse xmlns=\"{STS_NS}\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{request_id}</RequestId>\n</ErrorResponse>\n",
        escape(code),
        escape(message)
    )
}

/// A successful answer: `<{Action}Response><{Action}Result>{result}</...Result><ResponseMetadata/>`.
pub fn success_response(action: &str, result_xml: &str, request_id: &str) -> Response {
    xml(
        200,
        success_body(action, result_xml, request_id),
        request_id,
    )
}

/// The body of [`success_response`].
pub fn success_body(action: &str, result_xml: &str, request_id: &str) -> String {
    format!(
        "<{action}Response xmlns=\"{STS_NS}\">\n  <{action}Result>\n{result_xml}  </{action}Result>\n  <ResponseMetadata>\n    <RequestId>{request_id}</RequestId>\n  </ResponseMetadata>\n</{action}Response>\n"
    )
}

/// `<name>value</name>` with the value escaped, indented for readability.
pub fn element(indent: usize, name: &str, value: &str) -> String {
    format!("{:indent$}<{name}>{}</{name}>\n", "", escape(value))
}

fn xml(status: u16, body: String, request_id: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [
            (header::CONTENT_TYPE, "text/xml".to_string()),
            (
                header::HeaderName::from_static("x-amzn-requestid"),
                request_id.to_string(),
            ),
        ],
        body,
    )
        .into_response()
}
