//! The part of the Cloud Logging query language an audit client writes: comparisons on dotted
//! field paths (`=`, `!=`, `:` substring, `<`, `<=`, `>`, `>=`), quoted strings, `AND`
//! (or juxtaposition), `OR` (which binds tighter than `AND`, as in Logging), `NOT` and
//! parentheses. Timestamps compare as instants and `severity` by level; anything else as
//! numbers when both sides are numbers, else as text. An unparseable filter names the column,
//! as Logging's `INVALID_ARGUMENT` does.

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Filter {
    /// Every entry (the empty filter).
    All,
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Compare {
        path: Vec<String>,
        op: Op,
        value: String,
    },
    /// A bare value: the entry's text contains it (global search).
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Has,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    Op(Op),
    Quoted(String),
    Word(String),
}

/// Why a filter could not be read: Logging's message, with the 1-based column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FilterError {
    pub message: String,
}

fn syntax_error(column: usize, token: &str) -> FilterError {
    FilterError {
        message: format!(
            "Unparseable filter: syntax error at line 1, column {column}, token '{token}'"
        ),
    }
}

/// Tokens with their 1-based columns.
fn tokenize(text: &str) -> Result<Vec<(Token, usize)>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let column = i + 1;
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push((Token::Open, column));
                i += 1;
            }
            ')' => {
                tokens.push((Token::Close, column));
                i += 1;
            }
            '=' => {
                tokens.push((Token::Op(Op::Eq), column));
                i += 1;
            }
            ':' => {
                tokens.push((Token::Op(Op::Has), column));
                i += 1;
            }
            '!' | '<' | '>' => {
                let equals = chars.get(i + 1) == Some(&'=');
                let op = match (c, equals) {
                    ('!', true) => Op::Ne,
                    ('<', true) => Op::Le,
                    ('<', false) => Op::Lt,
                    ('>', true) => Op::Ge,
                    ('>', false) => Op::Gt,
                    _ => return Err(syntax_error(column, "!")),
                };
                tokens.push((Token::Op(op), column));
                i += if equals { 2 } else { 1 };
            }
            '"' => {
                let mut value = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(syntax_error(column, "\"")),
                        Some('"') => break,
                        Some('\\') => {
                            let escaped =
                                chars.get(i + 1).ok_or_else(|| syntax_error(column, "\""))?;
                            value.push(*escaped);
                            i += 2;
                        }
                        Some(other) => {
                            value.push(*other);
                            i += 1;
                        }
                    }
                }
                i += 1;
                tokens.push((Token::Quoted(value), column));
            }
            _ => {
                let start = i;
                while i < chars.len()
                    && !chars[i].is_whitespace()
                    && !"()=!<>:\"".contains(chars[i])
                {
                    i += 1;
                }
                tokens.push((Token::Word(chars[start..i].iter().collect()), column));
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    at: usize,
    end_column: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(t, _)| t)
    }

    fn error_here(&self) -> FilterError {
        match self.tokens.get(self.at) {
            Some((token, column)) => syntax_error(*column, &describe(token)),
            None => syntax_error(self.end_column, "<EOF>"),
        }
    }

    fn is_keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w == word)
    }

    /// `disj ((AND)? disj)*`, up to `)` or the end.
    fn conjunction(&mut self) -> Result<Filter, FilterError> {
        let mut parts = vec![self.disjunction()?];
        loop {
            match self.peek() {
                None | Some(Token::Close) => break,
                _ if self.is_keyword("AND") => {
                    self.at += 1;
                    parts.push(self.disjunction()?);
                }
                _ => parts.push(self.disjunction()?),
            }
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Filter::And(parts)
        })
    }

    fn disjunction(&mut self) -> Result<Filter, FilterError> {
        let mut parts = vec![self.unary()?];
        while self.is_keyword("OR") {
            self.at += 1;
            parts.push(self.unary()?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Filter::Or(parts)
        })
    }

    fn unary(&mut self) -> Result<Filter, FilterError> {
        if self.is_keyword("NOT") {
            self.at += 1;
            return Ok(Filter::Not(Box::new(self.unary()?)));
        }
        match self.peek().cloned() {
            Some(Token::Open) => {
                self.at += 1;
                let inner = self.conjunction()?;
                if self.peek() != Some(&Token::Close) {
                    return Err(self.error_here());
                }
                self.at += 1;
                Ok(inner)
            }
            Some(Token::Word(word)) if word != "AND" && word != "OR" => {
                self.at += 1;
                let Some(Token::Op(op)) = self.peek().cloned() else {
                    return Ok(Filter::Text(word));
                };
                self.at += 1;
                let value = match self.peek().cloned() {
                    Some(Token::Quoted(v)) => v,
                    Some(Token::Word(v)) if v != "AND" && v != "OR" && v != "NOT" => v,
                    _ => return Err(self.error_here()),
                };
                self.at += 1;
                Ok(Filter::Compare {
                    path: word.split('.').map(str::to_string).collect(),
                    op,
                    value,
                })
            }
            Some(Token::Quoted(text)) => {
                self.at += 1;
                Ok(Filter::Text(text))
            }
            _ => Err(self.error_here()),
        }
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::Open => "(".into(),
        Token::Close => ")".into(),
        Token::Op(op) => match op {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Has => ":",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
        .into(),
        Token::Quoted(v) => format!("\"{v}\""),
        Token::Word(w) => w.clone(),
    }
}

impl Filter {
    /// Parses a filter; empty text is [`Filter::All`].
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let tokens = tokenize(text)?;
        if tokens.is_empty() {
            return Ok(Filter::All);
        }
        let mut parser = Parser {
            tokens,
            at: 0,
            end_column: text.chars().count() + 1,
        };
        let filter = parser.conjunction()?;
        if parser.at < parser.tokens.len() {
            return Err(parser.error_here());
        }
        Ok(filter)
    }

    /// Whether a log entry (its JSON) matches.
    pub fn matches(&self, entry: &Value) -> bool {
        match self {
            Filter::All => true,
            Filter::And(parts) => parts.iter().all(|p| p.matches(entry)),
            Filter::Or(parts) => parts.iter().any(|p| p.matches(entry)),
            Filter::Not(inner) => !inner.matches(entry),
            Filter::Text(text) => entry
                .to_string()
                .to_lowercase()
                .contains(&text.to_lowercase()),
            Filter::Compare { path, op, value } => {
                let mut leaves = Vec::new();
                collect(entry, path, &mut leaves);
                let field = path.last().map(String::as_str).unwrap_or_default();
                match op {
                    Op::Ne => !leaves
                        .iter()
                        .any(|leaf| compare(field, leaf, value) == Some(std::cmp::Ordering::Equal)),
                    Op::Has if value == "*" => exists(entry, path),
                    Op::Has => leaves
                        .iter()
                        .any(|leaf| leaf.to_lowercase().contains(&value.to_lowercase())),
                    _ => leaves.iter().any(|leaf| {
                        compare(field, leaf, value).is_some_and(|order| match op {
                            Op::Eq => order.is_eq(),
                            Op::Lt => order.is_lt(),
                            Op::Le => order.is_le(),
                            Op::Gt => order.is_gt(),
                            _ => order.is_ge(),
                        })
                    }),
                }
            }
        }
    }
}

/// Whether anything (a scalar or an object) is at `path`.
fn exists(value: &Value, path: &[String]) -> bool {
    match (value, path.split_first()) {
        (Value::Array(items), _) => items.iter().any(|v| exists(v, path)),
        (Value::Object(map), Some((first, rest))) => map
            .get(first.trim_matches('"'))
            .is_some_and(|next| exists(next, rest)),
        (Value::Null, None) => false,
        (_, None) => true,
        _ => false,
    }
}

/// The scalar values at `path`, through arrays.
fn collect(value: &Value, path: &[String], out: &mut Vec<String>) {
    match (value, path.split_first()) {
        (Value::Array(items), _) => items.iter().for_each(|v| collect(v, path, out)),
        (Value::Object(map), Some((first, rest))) => {
            if let Some(next) = map.get(first.trim_matches('"')) {
                collect(next, rest, out);
            }
        }
        (Value::String(s), None) => out.push(s.clone()),
        (Value::Number(n), None) => out.push(n.to_string()),
        (Value::Bool(b), None) => out.push(b.to_string()),
        _ => {}
    }
}

const SEVERITIES: [&str; 9] = [
    "DEFAULT",
    "DEBUG",
    "INFO",
    "NOTICE",
    "WARNING",
    "ERROR",
    "CRITICAL",
    "ALERT",
    "EMERGENCY",
];

/// `leaf` against the filter's `value`, by the field's kind.
fn compare(field: &str, leaf: &str, value: &str) -> Option<std::cmp::Ordering> {
    if field == "timestamp" || field == "receiveTimestamp" {
        let parse = |t: &str| OffsetDateTime::parse(t, &Rfc3339).ok();
        return Some(parse(leaf)?.cmp(&parse(value)?));
    }
    if field == "severity" {
        let rank = |s: &str| SEVERITIES.iter().position(|l| l.eq_ignore_ascii_case(s));
        return Some(rank(leaf)?.cmp(&rank(value)?));
    }
    match (leaf.parse::<f64>(), value.parse::<f64>()) {
        (Ok(a), Ok(b)) => a.partial_cmp(&b),
        _ => Some(leaf.cmp(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry() -> Value {
        json!({
            "logName": "projects/p/logs/cloudaudit.googleapis.com%2Fdata_access",
            "timestamp": "2026-12-04T23:40:01.123Z",
            "severity": "ERROR",
            "protoPayload": {
                "serviceName": "iamcredentials.googleapis.com",
                "methodName": "GenerateAccessToken",
                "authenticationInfo": {"principalSubject": "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/arn:aws:sts::1:assumed-role/r/s"},
                "authorizationInfo": [{"permission": "iam.serviceAccounts.getAccessToken", "granted": false}],
                "status": {"code": 7},
            }
        })
    }

    #[test]
    fn comparisons_and_or_not_and_parentheses() {
        let e = entry();
        let yes = [
            "",
            r#"protoPayload.serviceName="iamcredentials.googleapis.com""#,
            r#"protoPayload.serviceName = "iamcredentials.googleapis.com" AND protoPayload.methodName=GenerateAccessToken"#,
            r#"protoPayload.serviceName="iamcredentials.googleapis.com" protoPayload.status.code=7"#,
            r#"(protoPayload.methodName="GenerateIdToken" OR protoPayload.methodName="GenerateAccessToken")"#,
            r#"protoPayload.authenticationInfo.principalSubject:"assumed-role/r/""#,
            r#"protoPayload.authorizationInfo.granted=false"#,
            r#"timestamp>="2026-12-04T23:00:00Z" timestamp<"2026-12-05T00:00:00+00:00""#,
            "severity>=WARNING",
            "NOT protoPayload.methodName=GenerateIdToken",
            r#"protoPayload.methodName!="GenerateIdToken""#,
            "protoPayload.status:*",
            "GenerateAccessToken",
        ];
        for filter in yes {
            let parsed = Filter::parse(filter).unwrap_or_else(|e| panic!("{filter}: {e:?}"));
            assert!(parsed.matches(&e), "{filter} should match: {parsed:?}");
        }
        let no = [
            r#"protoPayload.serviceName="sts.googleapis.com""#,
            r#"timestamp>"2026-12-05T00:00:00Z""#,
            "severity<ERROR",
            "protoPayload.nothing:*",
            r#"protoPayload.methodName="GenerateAccessToken" AND (severity=INFO OR severity=DEBUG)"#,
        ];
        for filter in no {
            assert!(!Filter::parse(filter).unwrap().matches(&e), "{filter}");
        }
    }

    #[test]
    fn unparseable_filters_name_the_column() {
        let cases = [
            ("protoPayload.serviceName=", "column 26, token '<EOF>'"),
            ("(severity=ERROR", "column 16, token '<EOF>'"),
            ("severity=ERROR)", "column 15, token ')'"),
            ("severity=\"ERROR", "column 10, token '\"'"),
            ("= x", "column 1, token '='"),
            ("a ! b", "column 3"),
        ];
        for (filter, expected) in cases {
            let e = Filter::parse(filter).unwrap_err();
            assert!(
                e.message
                    .starts_with("Unparseable filter: syntax error at line 1,"),
                "{e:?}"
            );
            assert!(e.message.contains(expected), "{filter}: {}", e.message);
        }
    }
}
