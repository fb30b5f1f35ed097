//! A small, honest subset of CEL: what workload identity providers' attribute conditions use.
//!
//! Google admits a federated credential only when the provider's attribute condition (a CEL
//! expression over `assertion.*`, `attribute.*` and `google.subject`) is true. The lab, the
//! linter and the doctor need to evaluate such conditions offline. Rather than pretend to be a
//! CEL engine, this file implements a subset and refuses everything else at parse time: a
//! construct we do not understand is a configuration error, never silently true (a condition
//! that always passes is the most dangerous bug a federation can have).
//!
//! Supported: string literals (`'...'`, `"..."`), `true`/`false`, references
//! `attribute.NAME`, `assertion.NAME`, `google.subject`, `==`, `!=`, `&&`, `||`, `!`,
//! parentheses, `x in ['a', 'b']`, and the methods `.startsWith(s)`, `.endsWith(s)`,
//! `.contains(s)` on strings.

use std::collections::BTreeMap;
use std::fmt;

/// Why an expression could not be parsed or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CelError {
    /// The text is not CEL at all (unbalanced parentheses, an unterminated string...).
    #[error("the condition is not valid CEL at offset {offset}: {message}")]
    Syntax {
        /// Byte offset in the expression.
        offset: usize,
        /// What was wrong.
        message: String,
    },
    /// Valid CEL, but outside the subset keyless understands.
    #[error("the condition uses {construct}, which keyless does not evaluate\n  hint: keyless understands string literals, attribute.X / assertion.X / google.subject, ==, !=, &&, ||, !, parentheses, `in [..]`, .startsWith(), .endsWith() and .contains(); rewrite the condition with these, or check it in Google Cloud instead")]
    Unsupported {
        /// The construct, e.g. "the function size()".
        construct: String,
    },
    /// Longer or deeper than any condition Google accepts; refused before it can exhaust the
    /// stack.
    #[error("the condition is {what}\n  hint: Google accepts attribute conditions of at most {MAX_SOURCE_CHARS} characters; keyless reads at most {MAX_NESTING} levels of parentheses, `!` and lists, and {MAX_HEIGHT} levels of operators")]
    TooComplex {
        /// What exceeded the limit.
        what: String,
    },
    /// Evaluation needed a value the credential does not have (CEL: "no such key").
    #[error("no such key: {0}")]
    NoSuchKey(String),
    /// An operator was applied to the wrong kind of value (CEL: "no such overload").
    #[error("no such overload: {0}")]
    NoSuchOverload(String),
}

/// Google's limit on an attribute condition's length, in characters.
pub const MAX_SOURCE_CHARS: usize = 4096;
/// How deep parentheses, `!` and lists may nest (the parser recurses on them).
pub const MAX_NESTING: usize = 100;
/// How deep the parsed expression may be (evaluation recurses on it).
pub const MAX_HEIGHT: usize = 250;

/// A parsed condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CelExpression {
    source: String,
    root: Node,
}

/// The values a condition may refer to, by their full dotted name (`attribute.aws_role`,
/// `assertion.arn`, `google.subject`).
pub type CelVariables = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Str(String),
    Bool(bool),
    List(Vec<Node>),
    Var(String),
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Eq(Box<Node>, Box<Node>),
    Ne(Box<Node>, Box<Node>),
    In(Box<Node>, Box<Node>),
    Method(Box<Node>, StringMethod, Box<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StringMethod {
    StartsWith,
    EndsWith,
    Contains,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Str(String),
    Bool(bool),
    List(Vec<Value>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
            Value::Bool(_) => "bool",
            Value::List(_) => "list",
        }
    }
}

impl fmt::Display for CelExpression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl CelExpression {
    /// Parses `source`; anything outside the subset is [`CelError::Unsupported`].
    pub fn parse(source: &str) -> Result<Self, CelError> {
        let chars = source.chars().count();
        if chars > MAX_SOURCE_CHARS {
            return Err(CelError::TooComplex {
                what: format!("{chars} characters long"),
            });
        }
        let tokens = tokenize(source)?;
        let mut parser = Parser {
            tokens,
            position: 0,
            end: source.len(),
            nesting: 0,
        };
        let root = parser.or()?;
        if height(&root) > MAX_HEIGHT {
            return Err(CelError::TooComplex {
                what: format!("more than {MAX_HEIGHT} operators deep"),
            });
        }
        if let Some((offset, token)) = parser.tokens.get(parser.position) {
            return Err(match token {
                Token::Other(op) => CelError::Unsupported {
                    construct: format!("the operator `{op}`"),
                },
                _ => CelError::Syntax {
                    offset: *offset,
                    message: format!("unexpected {token}"),
                },
            });
        }
        Ok(Self {
            source: source.to_string(),
            root,
        })
    }

    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the condition; a condition must be a bool (CEL errors otherwise).
    pub fn evaluate(&self, variables: &CelVariables) -> Result<bool, CelError> {
        match eval(&self.root, variables)? {
            Value::Bool(b) => Ok(b),
            other => Err(CelError::NoSuchOverload(format!(
                "the condition evaluates to a {}, not a bool",
                other.kind()
            ))),
        }
    }

    /// Evaluates an attribute mapping's expression, which must give a string.
    pub fn evaluate_string(&self, variables: &CelVariables) -> Result<String, CelError> {
        match eval(&self.root, variables)? {
            Value::Str(s) => Ok(s),
            other => Err(CelError::NoSuchOverload(format!(
                "the mapping evaluates to a {}, not a string",
                other.kind()
            ))),
        }
    }

    /// The variables the expression refers to, in order of first use (for explanations).
    pub fn references(&self) -> Vec<String> {
        // Pre-order, children left to right: the order the expression names them.
        let mut out: Vec<String> = Vec::new();
        let mut stack = vec![&self.root];
        while let Some(node) = stack.pop() {
            if let Node::Var(name) = node {
                if !out.contains(name) {
                    out.push(name.clone());
                }
            }
            stack.extend(node.children().into_iter().rev());
        }
        out
    }
}

impl Node {
    /// The operands, left to right.
    fn children(&self) -> Vec<&Node> {
        match self {
            Node::Str(_) | Node::Bool(_) | Node::Var(_) => Vec::new(),
            Node::List(items) => items.iter().collect(),
            Node::Not(a) => vec![a],
            Node::And(a, b)
            | Node::Or(a, b)
            | Node::Eq(a, b)
            | Node::Ne(a, b)
            | Node::In(a, b)
            | Node::Method(a, _, b) => vec![a, b],
        }
    }
}

/// The depth of the tree, without recursion (the tree may be as deep as the source is long).
fn height(root: &Node) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(root, 1usize)];
    while let Some((node, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        stack.extend(node.children().into_iter().map(|c| (c, depth + 1)));
    }
    deepest
}

fn eval(node: &Node, vars: &CelVariables) -> Result<Value, CelError> {
    let string = |node: &Node, what: &str| -> Result<String, CelError> {
        match eval(node, vars)? {
            Value::Str(s) => Ok(s),
            other => Err(CelError::NoSuchOverload(format!(
                "{what} needs a string, got a {}",
                other.kind()
            ))),
        }
    };
    let boolean = |node: &Node, what: &str| -> Result<bool, CelError> {
        match eval(node, vars)? {
            Value::Bool(b) => Ok(b),
            other => Err(CelError::NoSuchOverload(format!(
                "{what} needs a bool, got a {}",
                other.kind()
            ))),
        }
    };
    Ok(match node {
        Node::Str(s) => Value::Str(s.clone()),
        Node::Bool(b) => Value::Bool(*b),
        Node::List(items) => Value::List(
            items
                .iter()
                .map(|i| eval(i, vars))
                .collect::<Result<_, _>>()?,
        ),
        Node::Var(name) => Value::Str(
            vars.get(name)
                .cloned()
                .ok_or_else(|| CelError::NoSuchKey(name.clone()))?,
        ),
        Node::Not(a) => Value::Bool(!boolean(a, "`!`")?),
        // CEL's logical operators are commutative with respect to errors: a false (&&) or true
        // (||) side decides even if the other side errs.
        Node::And(a, b) => match (boolean(a, "`&&`"), boolean(b, "`&&`")) {
            (Ok(false), _) | (_, Ok(false)) => Value::Bool(false),
            (Ok(true), Ok(true)) => Value::Bool(true),
            (Err(e), _) | (_, Err(e)) => return Err(e),
        },
        Node::Or(a, b) => match (boolean(a, "`||`"), boolean(b, "`||`")) {
            (Ok(true), _) | (_, Ok(true)) => Value::Bool(true),
            (Ok(false), Ok(false)) => Value::Bool(false),
            (Err(e), _) | (_, Err(e)) => return Err(e),
        },
        Node::Eq(a, b) | Node::Ne(a, b) => {
            let (x, y) = (eval(a, vars)?, eval(b, vars)?);
            if std::mem::discriminant(&x) != std::mem::discriminant(&y) {
                return Err(CelError::NoSuchOverload(format!(
                    "cannot compare a {} with a {}",
                    x.kind(),
                    y.kind()
                )));
            }
            Value::Bool((x == y) == matches!(node, Node::Eq(..)))
        }
        Node::In(a, b) => {
            let x = eval(a, vars)?;
            match eval(b, vars)? {
                Value::List(items) => Value::Bool(items.contains(&x)),
                other => {
                    return Err(CelError::NoSuchOverload(format!(
                        "`in` needs a list on its right, got a {}",
                        other.kind()
                    )))
                }
            }
        }
        Node::Method(target, method, arg) => {
            let (s, a) = (
                string(target, "a string method")?,
                string(arg, "its argument")?,
            );
            Value::Bool(match method {
                StringMethod::StartsWith => s.starts_with(&a),
                StringMethod::EndsWith => s.ends_with(&a),
                StringMethod::Contains => s.contains(&a),
            })
        }
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Str(String),
    Ident(String),
    Int(String),
    Punct(&'static str),
    /// An operator outside the subset (`<`, `+`, `?`...), kept to name it in the error.
    Other(String),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Str(s) => write!(f, "string {s:?}"),
            Token::Ident(s) | Token::Int(s) => write!(f, "`{s}`"),
            Token::Punct(s) => write!(f, "`{s}`"),
            Token::Other(s) => write!(f, "`{s}`"),
        }
    }
}

fn tokenize(source: &str) -> Result<Vec<(usize, Token)>, CelError> {
    let bytes = source.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c == b'\'' || c == b'"' {
            if source[i..].starts_with("'''") || source[i..].starts_with("\"\"\"") {
                return Err(CelError::Unsupported {
                    construct: "a triple-quoted string".into(),
                });
            }
            let mut value = String::new();
            i += 1;
            let mut chars = source[i..].char_indices();
            let mut closed = false;
            while let Some((offset, ch)) = chars.next() {
                match ch {
                    '\\' => {
                        let escaped = match chars.next() {
                            Some((_, 'n')) => '\n',
                            Some((_, 't')) => '\t',
                            Some((_, e @ ('\\' | '\'' | '"'))) => e,
                            Some((_, e)) => {
                                return Err(CelError::Unsupported {
                                    construct: format!("the escape sequence \\{e}"),
                                })
                            }
                            None => break,
                        };
                        value.push(escaped);
                    }
                    ch if ch as u32 == u32::from(c) => {
                        i += offset + 1;
                        closed = true;
                        break;
                    }
                    ch => value.push(ch),
                }
            }
            if !closed {
                return Err(CelError::Syntax {
                    offset: start,
                    message: "unterminated string".into(),
                });
            }
            tokens.push((start, Token::Str(value)));
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            tokens.push((start, Token::Ident(source[start..i].to_string())));
            continue;
        }
        if c.is_ascii_digit() {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.') {
                i += 1;
            }
            tokens.push((start, Token::Int(source[start..i].to_string())));
            continue;
        }
        let two = source.get(i..i + 2).unwrap_or("");
        let punct: Option<&'static str> = match two {
            "==" => Some("=="),
            "!=" => Some("!="),
            "&&" => Some("&&"),
            "||" => Some("||"),
            _ => None,
        };
        if let Some(p) = punct {
            tokens.push((start, Token::Punct(p)));
            i += 2;
            continue;
        }
        let one: Option<&'static str> = match c {
            b'!' => Some("!"),
            b'(' => Some("("),
            b')' => Some(")"),
            b'[' => Some("["),
            b']' => Some("]"),
            b',' => Some(","),
            b'.' => Some("."),
            _ => None,
        };
        match one {
            Some(p) => {
                tokens.push((start, Token::Punct(p)));
                i += 1;
            }
            None => {
                let ch = source[i..].chars().next().unwrap_or('?');
                let op = if matches!(two, "<=" | ">=") {
                    two.to_string()
                } else {
                    ch.to_string()
                };
                i += op.len();
                tokens.push((start, Token::Other(op)));
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    position: usize,
    end: usize,
    /// How many `or` and `!` levels are open: the parser's own recursion depth.
    nesting: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position).map(|(_, t)| t)
    }

    fn offset(&self) -> usize {
        self.tokens
            .get(self.position)
            .map(|(o, _)| *o)
            .unwrap_or(self.end)
    }

    fn eat(&mut self, punct: &str) -> bool {
        if matches!(self.peek(), Some(Token::Punct(p)) if *p == punct) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, punct: &str) -> Result<(), CelError> {
        if self.eat(punct) {
            return Ok(());
        }
        Err(match self.peek() {
            Some(Token::Other(op)) => CelError::Unsupported {
                construct: format!("the operator `{op}`"),
            },
            Some(t) => CelError::Syntax {
                offset: self.offset(),
                message: format!("expected `{punct}`, found {t}"),
            },
            None => CelError::Syntax {
                offset: self.end,
                message: format!("expected `{punct}` before the end"),
            },
        })
    }

    /// Enters one level of recursion, refusing more than [`MAX_NESTING`].
    fn nest(&mut self) -> Result<(), CelError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(CelError::TooComplex {
                what: format!("nested more than {MAX_NESTING} levels deep"),
            });
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Node, CelError> {
        self.nest()?;
        let result = self.or_chain();
        self.nesting -= 1;
        result
    }

    fn or_chain(&mut self) -> Result<Node, CelError> {
        let mut left = self.and()?;
        while self.eat("||") {
            left = Node::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, CelError> {
        let mut left = self.comparison()?;
        while self.eat("&&") {
            left = Node::And(Box::new(left), Box::new(self.comparison()?));
        }
        Ok(left)
    }

    /// As in CEL's grammar, `!` binds tighter than `==`: `!a == b` is `(!a) == b`.
    fn comparison(&mut self) -> Result<Node, CelError> {
        let left = self.unary()?;
        if self.eat("==") {
            return Ok(Node::Eq(Box::new(left), Box::new(self.unary()?)));
        }
        if self.eat("!=") {
            return Ok(Node::Ne(Box::new(left), Box::new(self.unary()?)));
        }
        if matches!(self.peek(), Some(Token::Ident(k)) if k == "in") {
            self.position += 1;
            return Ok(Node::In(Box::new(left), Box::new(self.unary()?)));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Node, CelError> {
        if self.eat("!") {
            self.nest()?;
            let operand = self.unary();
            self.nesting -= 1;
            return Ok(Node::Not(Box::new(operand?)));
        }
        self.member()
    }

    fn member(&mut self) -> Result<Node, CelError> {
        let mut node = self.primary()?;
        while self.eat(".") {
            let Some(Token::Ident(name)) = self.peek().cloned() else {
                return Err(CelError::Syntax {
                    offset: self.offset(),
                    message: "expected a method name after `.`".into(),
                });
            };
            self.position += 1;
            if !self.eat("(") {
                return Err(CelError::Unsupported {
                    construct: format!("the field selection `.{name}` on an expression"),
                });
            }
            let method = match name.as_str() {
                "startsWith" => StringMethod::StartsWith,
                "endsWith" => StringMethod::EndsWith,
                "contains" => StringMethod::Contains,
                other => {
                    return Err(CelError::Unsupported {
                        construct: format!("the method .{other}()"),
                    })
                }
            };
            let arg = self.or()?;
            if self.eat(",") {
                return Err(CelError::Unsupported {
                    construct: format!("more than one argument to .{name}()"),
                });
            }
            self.expect(")")?;
            node = Node::Method(Box::new(node), method, Box::new(arg));
        }
        Ok(node)
    }

    fn primary(&mut self) -> Result<Node, CelError> {
        let offset = self.offset();
        let Some(token) = self.peek().cloned() else {
            return Err(CelError::Syntax {
                offset,
                message: "the expression ends too early".into(),
            });
        };
        self.position += 1;
        match token {
            Token::Str(s) => Ok(Node::Str(s)),
            Token::Int(n) => Err(CelError::Unsupported {
                construct: format!("the number {n}"),
            }),
            Token::Other(op) => Err(CelError::Unsupported {
                construct: format!("the operator `{op}`"),
            }),
            Token::Punct("(") => {
                let inner = self.or()?;
                self.expect(")")?;
                Ok(inner)
            }
            Token::Punct("[") => {
                let mut items = Vec::new();
                if !self.eat("]") {
                    loop {
                        items.push(self.or()?);
                        if self.eat("]") {
                            break;
                        }
                        self.expect(",")?;
                    }
                }
                Ok(Node::List(items))
            }
            Token::Punct(p) => Err(CelError::Syntax {
                offset,
                message: format!("unexpected `{p}`"),
            }),
            Token::Ident(name) => self.reference(name, offset),
        }
    }

    /// `true`, `false`, `attribute.X`, `assertion.X`, `google.subject`.
    fn reference(&mut self, name: String, offset: usize) -> Result<Node, CelError> {
        match name.as_str() {
            "true" => return Ok(Node::Bool(true)),
            "false" => return Ok(Node::Bool(false)),
            "attribute" | "assertion" | "google" => {}
            other => {
                return Err(if matches!(self.peek(), Some(Token::Punct("("))) {
                    CelError::Unsupported {
                        construct: format!("the function {other}()"),
                    }
                } else {
                    CelError::Unsupported {
                        construct: format!("the identifier `{other}`"),
                    }
                })
            }
        }
        if name == "assertion" {
            return self.assertion_path(offset);
        }
        if matches!(self.peek(), Some(Token::Punct("["))) {
            return Err(CelError::Unsupported {
                construct: format!("index access `{name}[...]`"),
            });
        }
        if !self.eat(".") {
            return Err(CelError::Syntax {
                offset,
                message: format!("`{name}` needs a field, e.g. `{name}.NAME`"),
            });
        }
        let Some(Token::Ident(field)) = self.peek().cloned() else {
            return Err(CelError::Syntax {
                offset: self.offset(),
                message: format!("expected a field name after `{name}.`"),
            });
        };
        self.position += 1;
        if name == "google" && field != "subject" {
            return Err(CelError::Unsupported {
                construct: format!("`google.{field}` (only google.subject)"),
            });
        }
        Ok(Node::Var(format!("{name}.{field}")))
    }

    /// `assertion.a`, `assertion['https://sts.amazonaws.com/'].aws_account`, ...: a claim of the
    /// token, nested or not, named by [`assertion_key`]'s canonical spelling.
    fn assertion_path(&mut self, offset: usize) -> Result<Node, CelError> {
        let mut path: Vec<String> = Vec::new();
        loop {
            if self.eat("[") {
                let Some(Token::Str(key)) = self.peek().cloned() else {
                    return Err(CelError::Unsupported {
                        construct: "an index into assertion that is not a string literal".into(),
                    });
                };
                self.position += 1;
                self.expect("]")?;
                path.push(key);
                continue;
            }
            // `.name(` is a method call on the claim, for `member` to read.
            let is_field = matches!(self.peek(), Some(Token::Punct(".")))
                && matches!(
                    self.tokens.get(self.position + 1),
                    Some((_, Token::Ident(_)))
                )
                && !matches!(
                    self.tokens.get(self.position + 2),
                    Some((_, Token::Punct("(")))
                );
            if !is_field {
                break;
            }
            self.position += 1;
            if let Some(Token::Ident(field)) = self.peek().cloned() {
                self.position += 1;
                path.push(field);
            }
        }
        if path.is_empty() {
            return Err(CelError::Syntax {
                offset,
                message: "`assertion` needs a claim, e.g. `assertion.sub`".into(),
            });
        }
        Ok(Node::Var(assertion_key(&path)))
    }
}

/// The variable name of the claim at `path` in the token (`["sub"]` → `assertion.sub`,
/// `["https://sts.amazonaws.com/", "aws_account"]` →
/// `assertion['https://sts.amazonaws.com/'].aws_account`): how a condition names it however it
/// is written (`assertion['sub']` is `assertion.sub`).
pub fn assertion_key<S: AsRef<str>>(path: &[S]) -> String {
    let mut key = String::from("assertion");
    for part in path {
        let part = part.as_ref();
        let identifier = part
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if identifier {
            key.push('.');
            key.push_str(part);
        } else {
            key.push_str("['");
            key.push_str(&part.replace('\\', "\\\\").replace('\'', "\\'"));
            key.push_str("']");
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> CelVariables {
        [
            (
                "attribute.aws_role",
                "arn:aws:sts::123456789012:assumed-role/aws-workload",
            ),
            ("attribute.aws_account", "123456789012"),
            (
                "google.subject",
                "arn:aws:sts::123456789012:assumed-role/aws-workload/s1",
            ),
            (
                "assertion.arn",
                "arn:aws:sts::123456789012:assumed-role/aws-workload/s1",
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    fn check(source: &str) -> Result<bool, CelError> {
        CelExpression::parse(source)?.evaluate(&vars())
    }

    #[test]
    fn the_supported_subset_evaluates_as_cel_does() {
        let cases = [
            (
                "attribute.aws_role == \"arn:aws:sts::123456789012:assumed-role/aws-workload\"",
                true,
            ),
            ("attribute.aws_role == 'arn:aws:iam::123456789012:user/ci-user'", false),
            ("attribute.aws_account != '999999999999'", true),
            ("attribute.aws_account in ['111111111111', '123456789012']", true),
            ("attribute.aws_account in []", false),
            ("google.subject.startsWith('arn:aws:sts::123456789012:')", true),
            ("assertion.arn.endsWith('/s1') && !assertion.arn.contains('user/')", true),
            ("attribute.aws_account == 'x' || (true && attribute.aws_role.contains('aws-workload'))", true),
            ("!(attribute.aws_account == '123456789012')", false),
            ("'a\\'b' == \"a'b\"", true),
            ("false || false", false),
            ("!false == true", true),
        ];
        for (source, expected) in cases {
            assert_eq!(check(source), Ok(expected), "{source}");
        }
    }

    #[test]
    fn missing_keys_and_type_errors_are_errors_not_false() {
        assert_eq!(
            check("attribute.team == 'x'"),
            Err(CelError::NoSuchKey("attribute.team".into()))
        );
        assert!(matches!(
            check("attribute.aws_account == true"),
            Err(CelError::NoSuchOverload(_))
        ));
        assert!(matches!(
            check("attribute.aws_account"),
            Err(CelError::NoSuchOverload(_))
        ));
        // A deciding side wins over an erring one, as in CEL.
        assert_eq!(check("attribute.team == 'x' || true"), Ok(true));
        assert_eq!(check("false && attribute.team == 'x'"), Ok(false));
    }

    #[test]
    fn constructs_outside_the_subset_are_refused_at_parse_time() {
        for (source, construct) in [
            ("size(attribute.aws_role) > 3", "the function size()"),
            (
                "attribute.aws_role.matches('^arn')",
                "the method .matches()",
            ),
            ("attribute.x > 'a'", "the operator `>`"),
            ("attribute.x + 'a' == 'b'", "the operator `+`"),
            ("attribute['aws_role'] == 'x'", "index access"),
            ("attribute.aws_account == 12", "the number 12"),
            (
                "assertion.arn.extract('{x}/') == 'a'",
                "the method .extract()",
            ),
            ("request.time == 'x'", "the identifier `request`"),
            ("google.groups == 'x'", "google.groups"),
            ("true ? 'a' : 'b'", "the operator `?`"),
        ] {
            match CelExpression::parse(source) {
                Err(CelError::Unsupported { construct: c }) => {
                    assert!(c.contains(construct), "{source}: {c}")
                }
                other => panic!("{source}: expected Unsupported, got {other:?}"),
            }
        }
        let e = CelExpression::parse("x > 1").unwrap_err().to_string();
        assert!(e.contains("hint:"), "{e}");
    }

    #[test]
    fn syntax_errors_say_where() {
        assert!(matches!(
            CelExpression::parse("(attribute.a == 'x'"),
            Err(CelError::Syntax { .. })
        ));
        assert!(matches!(
            CelExpression::parse("attribute.a == 'x"),
            Err(CelError::Syntax { offset: 15, .. })
        ));
        assert!(matches!(
            CelExpression::parse("attribute.a =="),
            Err(CelError::Syntax { .. })
        ));
        assert!(matches!(
            CelExpression::parse(""),
            Err(CelError::Syntax { .. })
        ));
    }

    #[test]
    fn references_are_listed_for_explanations() {
        let e = CelExpression::parse(
            "attribute.aws_role == 'x' && (google.subject.startsWith('a') || attribute.aws_role != 'y')",
        )
        .unwrap();
        assert_eq!(e.references(), ["attribute.aws_role", "google.subject"]);
        assert_eq!(e.to_string(), e.source());
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    /// Token soup from the subset and around it: what real conditions and typos are made of.
    fn expression() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![
                prop::sample::select(vec![
                    "attribute.aws_role",
                    "assertion.arn",
                    "google.subject",
                    "attribute.x",
                    "'arn:aws:sts::1:assumed-role/r'",
                    "\"x\"",
                    "'\\''",
                    "true",
                    "false",
                    "==",
                    "!=",
                    "&&",
                    "||",
                    "!",
                    "(",
                    ")",
                    "[",
                    "]",
                    ",",
                    ".",
                    "in",
                    "startsWith",
                    "endsWith",
                    "contains",
                    "size",
                    "1",
                    "<",
                    ">=",
                    "?",
                    ":",
                    "'''",
                    "'\\q'",
                ])
                .prop_map(String::from),
                "[ -~]{0,3}",
            ],
            0..24,
        )
        .prop_map(|parts| parts.join(" "))
    }

    fn variables() -> CelVariables {
        CelVariables::from([
            (
                "attribute.aws_role".into(),
                "arn:aws:sts::1:assumed-role/r".into(),
            ),
            (
                "assertion.arn".into(),
                "arn:aws:sts::1:assumed-role/r/s".into(),
            ),
            (
                "google.subject".into(),
                "arn:aws:sts::1:assumed-role/r/s".into(),
            ),
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any claim path, spelt as [`assertion_key`] does or with brackets throughout, names
        /// the same variable: a condition on it holds for its value and only for it.
        #[test]
        fn any_assertion_path_names_its_claim(
            path in proptest::collection::vec(prop_oneof!["[a-z_][a-z0-9_]{0,6}", any::<String>(), "[ -~]{1,6}"], 1..4),
            value in any::<String>(),
        ) {
            let literal = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
            let key = assertion_key(&path);
            let brackets: String = path.iter().map(|p| format!("[{}]", literal(p))).collect();
            let vars = CelVariables::from([(key.clone(), value.clone())]);
            for spelling in [key.clone(), format!("assertion{brackets}")] {
                let condition = format!("{spelling} == {}", literal(&value));
                if condition.chars().count() >= MAX_SOURCE_CHARS {
                    continue;
                }
                let parsed = CelExpression::parse(&condition);
                prop_assert!(parsed.is_ok(), "{} does not parse: {:?}", condition, parsed);
                let parsed = parsed.unwrap();
                prop_assert_eq!(parsed.references(), vec![key.clone()]);
                prop_assert_eq!(parsed.evaluate(&vars), Ok(true));
                let other = CelVariables::from([(key.clone(), format!("{value}x"))]);
                prop_assert_eq!(parsed.evaluate(&other), Ok(false));
            }
        }

        /// Claim names that are CEL words or method names are claims too.
        #[test]
        fn claim_names_that_are_words_name_claims(word in prop::sample::select(vec!["in", "true", "false", "size", "contains", "startsWith", "endsWith", "assertion", "google", "attribute", "null", "has", "matches", "_"])) {
            let key = assertion_key(&[word]);
            for spelling in [key.clone(), format!("assertion['{word}']"), format!("assertion.a.{word}")] {
                let condition = format!("{spelling} == 'v'");
                let parsed = CelExpression::parse(&condition);
                prop_assert!(parsed.is_ok(), "{} does not parse: {:?}", condition, parsed);
            }
            let parsed = CelExpression::parse(&format!("{key} == 'v'")).unwrap();
            prop_assert_eq!(parsed.evaluate(&CelVariables::from([(key.clone(), "v".to_string())])), Ok(true));
        }

        /// Any expression: parsed (and then evaluated to a bool or a CEL error) or refused.
        #[test]
        fn any_expression_parses_or_is_refused(text in prop_oneof![expression(), any::<String>()]) {
            if let Ok(e) = CelExpression::parse(&text) {
                let _ = e.evaluate(&variables());
                let _ = e.references();
                prop_assert_eq!(e.source(), text.as_str());
            }
        }
    }

    /// Found by the `cel` fuzz target (crafted deep inputs): these overflowed the stack in the
    /// parser, in evaluation and when dropping the tree. Now each is refused, in bounded depth.
    #[test]
    fn deep_and_long_conditions_are_refused_not_a_stack_overflow() {
        let chain = format!("''{}", "||''".repeat(300));
        for text in [
            format!("{}true{}", "(".repeat(50_000), ")".repeat(50_000)),
            format!("{}true", "!".repeat(100_000)),
            "[".repeat(50_000),
            format!("true{}", " && true".repeat(30_000)),
            format!("{}true{}", "(".repeat(200), ")".repeat(200)),
            chain.clone(),
        ] {
            let error = CelExpression::parse(&text).unwrap_err();
            assert!(matches!(error, CelError::TooComplex { .. }), "{error}");
        }
        // Within the limits, as deep as allowed still works.
        let nested = format!("{}true{}", "(".repeat(90), ")".repeat(90));
        assert_eq!(
            CelExpression::parse(&nested)
                .unwrap()
                .evaluate(&variables()),
            Ok(true)
        );
        let alternatives = format!("false{}", " || attribute.aws_role == 'x'".repeat(100));
        assert!(CelExpression::parse(&alternatives).is_ok());
        assert!(chain.len() < MAX_SOURCE_CHARS);
    }
}
