//! ServiceNow's encoded query language (`sysparm_query`): parse, evaluate, print, and the
//! keyset query the fetcher pages with.
//!
//! # Why keyset paging
//!
//! The fetcher reads tables that change while it reads them. Offset paging
//! (`sysparm_offset=N`) over a moving table skips a row whenever an earlier row moves
//! out of the window between two pages, and repeats one when a row moves in. Paging by a
//! cursor on the sort key avoids that: each page asks for "rows after the last one I saw",
//! so rows that change mid-scan simply show up again later with a newer `sys_updated_on`.
//!
//! The cursor must be unique, so it is the pair `(sys_updated_on, sys_id)`. A cursor on the
//! timestamp alone loses rows: `sys_updated_on` has one-second resolution, and when more
//! than a page of rows share one second, `sys_updated_on>T` skips the rest of that second.
//! ServiceNow has no tuple comparison, so `(u, id) > (T, ID)` is spelled as two `^NQ`
//! groups, `u>T` OR (`u=T` AND `id>ID`), ordered by both keys — see [`keyset`].
//!
//! # Grammar
//!
//! A query is a list of segments separated by `^`. `^NQ` starts a new group (groups are
//! ORed), `^` starts a new clause in the current group (clauses are ANDed), and `^OR` adds
//! a condition to the current clause (conditions are ORed). So `^OR` binds tightest, then
//! `^`, then `^NQ`. `ORDERBYf` / `ORDERBYDESCf` may appear anywhere and are collected in
//! order; a trailing `^EQ` (added by ServiceNow's list UI) and empty segments are ignored.
//!
//! A condition is `field` `operator` `value`. Field names are `[A-Za-z0-9_.]` with `.`
//! dot-walking through references. Because word operators (`IN`, `LIKE`, …) are made of
//! field-name characters, the operator is the *first* operator token found after at least
//! one field character. ServiceNow column names are lower case, so this is unambiguous in
//! practice; a field name containing an upper-case operator word cannot be expressed.
//!
//! ServiceNow has no escape for `^` inside a value, so values containing `^` cannot be
//! expressed either (ServiceNow itself would read them as a separator).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// Comparison operator of one [`Condition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `=`
    Eq,
    /// `!=`
    NotEq,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `IN` — value is a comma-separated list.
    In,
    /// `NOT IN` — value is a comma-separated list.
    NotIn,
    /// `STARTSWITH` (case-insensitive, as in ServiceNow).
    StartsWith,
    /// `ENDSWITH` (case-insensitive).
    EndsWith,
    /// `LIKE`: contains (case-insensitive).
    Like,
    /// `NOT LIKE`: does not contain (case-insensitive).
    NotLike,
    /// `ISEMPTY`: no value, or the empty string. Takes no value.
    IsEmpty,
    /// `ISNOTEMPTY`. Takes no value.
    IsNotEmpty,
}

impl Operator {
    /// The token ServiceNow writes for this operator.
    pub fn token(self) -> &'static str {
        match self {
            Operator::Eq => "=",
            Operator::NotEq => "!=",
            Operator::Gt => ">",
            Operator::Ge => ">=",
            Operator::Lt => "<",
            Operator::Le => "<=",
            Operator::In => "IN",
            Operator::NotIn => "NOT IN",
            Operator::StartsWith => "STARTSWITH",
            Operator::EndsWith => "ENDSWITH",
            Operator::Like => "LIKE",
            Operator::NotLike => "NOT LIKE",
            Operator::IsEmpty => "ISEMPTY",
            Operator::IsNotEmpty => "ISNOTEMPTY",
        }
    }

    /// Whether the operator is written without a value (`fieldISEMPTY`).
    pub fn is_unary(self) -> bool {
        matches!(self, Operator::IsEmpty | Operator::IsNotEmpty)
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.token())
    }
}

/// Operator tokens recognised in a condition. Where two tokens start at the same place the
/// longer comes first (`>=` before `>`, `ISNOTEMPTY` before `ISEMPTY`, `INSTANCEOF` before
/// `IN`), so the first match at a position is the right one.
const TOKENS: &[(&str, Token)] = &[
    ("!=", Token::Supported(Operator::NotEq)),
    (">=", Token::Supported(Operator::Ge)),
    ("<=", Token::Supported(Operator::Le)),
    ("=", Token::Supported(Operator::Eq)),
    (">", Token::Supported(Operator::Gt)),
    ("<", Token::Supported(Operator::Lt)),
    ("ISNOTEMPTY", Token::Supported(Operator::IsNotEmpty)),
    ("ISEMPTY", Token::Supported(Operator::IsEmpty)),
    ("NOT IN", Token::Supported(Operator::NotIn)),
    ("NOT LIKE", Token::Supported(Operator::NotLike)),
    // ServiceNow also accepts the spelling without a space.
    ("NOTLIKE", Token::Supported(Operator::NotLike)),
    ("STARTSWITH", Token::Supported(Operator::StartsWith)),
    ("ENDSWITH", Token::Supported(Operator::EndsWith)),
    ("LIKE", Token::Supported(Operator::Like)),
    // Real ServiceNow operators we do not evaluate: recognised so that the error names
    // them instead of mis-reading e.g. `fieldINSTANCEOFtask` as `field IN "STANCEOFtask"`.
    ("INSTANCEOF", Token::Unsupported),
    ("IN", Token::Supported(Operator::In)),
    ("ANYTHING", Token::Unsupported),
    ("BETWEEN", Token::Unsupported),
    ("CHANGESFROM", Token::Unsupported),
    ("CHANGESTO", Token::Unsupported),
    ("DATEPART", Token::Unsupported),
    ("DYNAMIC", Token::Unsupported),
    ("EMPTYSTRING", Token::Unsupported),
    ("GT_FIELD", Token::Unsupported),
    ("GT_OR_EQUALS_FIELD", Token::Unsupported),
    ("LT_FIELD", Token::Unsupported),
    ("LT_OR_EQUALS_FIELD", Token::Unsupported),
    ("LESSTHAN", Token::Unsupported),
    ("MORETHAN", Token::Unsupported),
    ("NOTON", Token::Unsupported),
    ("NSAMEAS", Token::Unsupported),
    ("ON", Token::Unsupported),
    ("RELATIVEEE", Token::Unsupported),
    ("RELATIVEGE", Token::Unsupported),
    ("RELATIVEGT", Token::Unsupported),
    ("RELATIVELE", Token::Unsupported),
    ("RELATIVELT", Token::Unsupported),
    ("SAMEAS", Token::Unsupported),
    ("VALCHANGES", Token::Unsupported),
];

/// Segment keywords of ServiceNow's query language that this module does not evaluate.
const UNSUPPORTED_SEGMENTS: &[&str] = &[
    "RLQUERY",
    "ENDRLQUERY",
    "SUBQUERY",
    "ENDSUBQUERY",
    "JOIN",
    "GROUPBY",
    "123TEXTQUERY321",
    "123TEXTINDEXGROUP321",
];

#[derive(Debug, Clone, Copy)]
enum Token {
    Supported(Operator),
    Unsupported,
}

/// One `field OPERATOR value` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// Column name, possibly dot-walked through references (`business_service.department`).
    pub field: String,
    pub op: Operator,
    /// Raw value as written in the query; empty for [`Operator::is_unary`] operators.
    pub value: String,
}

impl Condition {
    /// Convenience constructor.
    pub fn new(field: impl Into<String>, op: Operator, value: impl Into<String>) -> Self {
        Condition {
            field: field.into(),
            op,
            value: value.into(),
        }
    }

    /// Evaluates the condition against the raw stored value of its field.
    ///
    /// Ordering operators (`>`, `>=`, `<`, `<=`) never match an empty field, like SQL
    /// comparisons with NULL. Text operators are case-insensitive, as ServiceNow's are.
    pub fn matches(&self, stored: Option<&str>) -> bool {
        let stored_is_empty = stored.is_none_or(str::is_empty);
        let text = stored.unwrap_or("");
        let equals = |wanted: &str| compare_values(stored, Some(wanted)) == Ordering::Equal;
        let ordering = || compare_values(stored, Some(&self.value));
        match self.op {
            Operator::Eq => equals(&self.value),
            Operator::NotEq => !equals(&self.value),
            Operator::Gt => !stored_is_empty && ordering() == Ordering::Greater,
            Operator::Ge => !stored_is_empty && ordering() != Ordering::Less,
            Operator::Lt => !stored_is_empty && ordering() == Ordering::Less,
            Operator::Le => !stored_is_empty && ordering() != Ordering::Greater,
            Operator::In => self.value.split(',').any(equals),
            Operator::NotIn => !self.value.split(',').any(equals),
            Operator::StartsWith => lower(text).starts_with(&lower(&self.value)),
            Operator::EndsWith => lower(text).ends_with(&lower(&self.value)),
            Operator::Like => lower(text).contains(&lower(&self.value)),
            Operator::NotLike => !lower(text).contains(&lower(&self.value)),
            Operator::IsEmpty => stored_is_empty,
            Operator::IsNotEmpty => !stored_is_empty,
        }
    }
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.op.is_unary() {
            write!(f, "{}{}", self.field, self.op)
        } else {
            write!(f, "{}{}{}", self.field, self.op, self.value)
        }
    }
}

/// One `ORDERBY` / `ORDERBYDESC` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy {
    pub field: String,
    pub descending: bool,
}

impl OrderBy {
    /// Ascending order on `field`.
    pub fn asc(field: impl Into<String>) -> Self {
        OrderBy {
            field: field.into(),
            descending: false,
        }
    }

    /// Descending order on `field`.
    pub fn desc(field: impl Into<String>) -> Self {
        OrderBy {
            field: field.into(),
            descending: true,
        }
    }
}

impl fmt::Display for OrderBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keyword = if self.descending {
            "ORDERBYDESC"
        } else {
            "ORDERBY"
        };
        write!(f, "{keyword}{}", self.field)
    }
}

/// A parsed encoded query.
///
/// `^NQ` separates groups (OR of groups). Inside a group: AND of clauses; a clause is an OR
/// of conditions joined with `^OR`. No groups means "match all".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EncodedQuery {
    pub groups: Vec<Vec<Vec<Condition>>>,
    pub order_by: Vec<OrderBy>,
}

/// An encoded query that could not be parsed. Every variant names the offending fragment
/// and its byte position in the query string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error(
        "no operator in condition {fragment:?} at byte {position} of the query \
         (expected field then one of =, !=, >, >=, <, <=, IN, NOT IN, STARTSWITH, ENDSWITH, \
         LIKE, NOT LIKE, ISEMPTY, ISNOTEMPTY)"
    )]
    MissingOperator { fragment: String, position: usize },

    #[error("condition {fragment:?} at byte {position} of the query has no field name")]
    MissingField { fragment: String, position: usize },

    #[error(
        "field name {field:?} in {fragment:?} at byte {position} of the query is not a valid \
         dot-walked name (empty part)"
    )]
    BadFieldName {
        field: String,
        fragment: String,
        position: usize,
    },

    #[error("operator {operator} in {fragment:?} at byte {position} of the query takes no value")]
    UnexpectedValue {
        operator: Operator,
        fragment: String,
        position: usize,
    },

    #[error(
        "operator {operator:?} in {fragment:?} at byte {position} of the query is not supported"
    )]
    UnsupportedOperator {
        operator: String,
        fragment: String,
        position: usize,
    },

    #[error("query keyword in {fragment:?} at byte {position} of the query is not supported")]
    UnsupportedSegment { fragment: String, position: usize },

    #[error(
        "^OR fragment {fragment:?} at byte {position} of the query has no condition before it \
         to OR with"
    )]
    DanglingOr { fragment: String, position: usize },

    #[error("ORDERBY fragment {fragment:?} at byte {position} of the query names no valid field")]
    BadOrderBy { fragment: String, position: usize },
}

impl EncodedQuery {
    /// A query that matches every row (the empty string).
    pub fn match_all() -> Self {
        EncodedQuery::default()
    }

    /// Parses ServiceNow's encoded form. The empty string matches all rows.
    pub fn parse(s: &str) -> Result<EncodedQuery, QueryError> {
        let mut parser = Parser {
            groups: vec![Vec::new()],
            order_by: Vec::new(),
        };
        let mut position = 0;
        for (index, segment) in s.split('^').enumerate() {
            parser.segment(segment, position, index == 0)?;
            position += segment.len() + 1;
        }
        let groups = parser
            .groups
            .into_iter()
            .filter(|group| !group.is_empty())
            .collect();
        Ok(EncodedQuery {
            groups,
            order_by: parser.order_by,
        })
    }

    /// Whether a row matches. `field` returns the raw stored value of a (possibly
    /// dot-walked, e.g. `business_service.department`) field, `None` when it has none.
    pub fn matches(&self, field: &dyn Fn(&str) -> Option<String>) -> bool {
        self.groups.is_empty()
            || self.groups.iter().any(|group| {
                group.iter().all(|clause| {
                    clause
                        .iter()
                        .any(|condition| condition.matches(field(&condition.field).as_deref()))
                })
            })
    }

    /// Orders two rows by this query's `ORDERBY` terms (each compared with
    /// [`compare_values`]); `Equal` when there are none or the rows tie on all of them.
    pub fn compare_rows(
        &self,
        a: &dyn Fn(&str) -> Option<String>,
        b: &dyn Fn(&str) -> Option<String>,
    ) -> Ordering {
        self.order_by
            .iter()
            .map(|order| {
                let ordering =
                    compare_values(a(&order.field).as_deref(), b(&order.field).as_deref());
                if order.descending {
                    ordering.reverse()
                } else {
                    ordering
                }
            })
            .find(|ordering| ordering.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl EncodedQuery {
    /// This query AND `other`: every group of one is combined with every group of the other,
    /// since `^NQ` ORs groups and `(a OR b) AND (c OR d)` is `ac OR ad OR bc OR bd`. A plain
    /// `^` between the two strings would instead AND `other`'s first group into this query's
    /// last one only. `other`'s `ORDERBY` terms are dropped: this query decides the order.
    pub fn and(&self, other: &EncodedQuery) -> EncodedQuery {
        let groups = if other.groups.is_empty() {
            self.groups.clone()
        } else if self.groups.is_empty() {
            other.groups.clone()
        } else {
            self.groups
                .iter()
                .flat_map(|mine| {
                    other
                        .groups
                        .iter()
                        .map(move |theirs| mine.iter().chain(theirs).cloned().collect())
                })
                .collect()
        };
        EncodedQuery {
            groups,
            order_by: self.order_by.clone(),
        }
    }

    /// Every field a condition names, once each, in order of first appearance.
    pub fn fields(&self) -> Vec<&str> {
        let mut fields: Vec<&str> = Vec::new();
        for condition in self.groups.iter().flatten().flatten() {
            if !fields.contains(&condition.field.as_str()) {
                fields.push(&condition.field);
            }
        }
        fields
    }
}

impl FromStr for EncodedQuery {
    type Err = QueryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EncodedQuery::parse(s)
    }
}

/// Prints ServiceNow's encoded form; ORDERBY terms come last. `parse(q.to_string()) == q`
/// holds for every query `parse` returns (see the module docs for what cannot be expressed).
impl fmt::Display for EncodedQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut separator = "";
        for group in &self.groups {
            for clause in group {
                for condition in clause {
                    write!(f, "{separator}{condition}")?;
                    separator = "^OR";
                }
                separator = "^";
            }
            separator = "^NQ";
        }
        if !self.groups.is_empty() {
            separator = "^";
        }
        for order in &self.order_by {
            write!(f, "{separator}{order}")?;
            separator = "^";
        }
        Ok(())
    }
}

/// Builds an [`EncodedQuery`] while walking `^`-separated segments.
struct Parser {
    /// Always holds at least one (possibly empty) group: the one being filled.
    groups: Vec<Vec<Vec<Condition>>>,
    order_by: Vec<OrderBy>,
}

impl Parser {
    /// Handles one segment; `position` is its byte offset in the query. Prefixes (`OR`,
    /// `NQ`) are only meaningful after a `^`, i.e. when the segment is not the first.
    fn segment(&mut self, segment: &str, position: usize, first: bool) -> Result<(), QueryError> {
        if segment.is_empty() || segment == "EQ" {
            return Ok(());
        }
        if !first && !segment.starts_with("ORDERBY") {
            if let Some(rest) = segment.strip_prefix("NQ") {
                self.groups.push(Vec::new());
                return self.segment(rest, position + 2, true);
            }
            if let Some(rest) = segment.strip_prefix("OR") {
                let condition = parse_condition(rest, position + 2)?;
                let clause = self
                    .groups
                    .last_mut()
                    .and_then(|group| group.last_mut())
                    .ok_or_else(|| QueryError::DanglingOr {
                        fragment: segment.to_owned(),
                        position,
                    })?;
                clause.push(condition);
                return Ok(());
            }
        }
        if let Some(order) = parse_order_by(segment, position)? {
            self.order_by.push(order);
            return Ok(());
        }
        if UNSUPPORTED_SEGMENTS
            .iter()
            .any(|keyword| segment.starts_with(keyword))
        {
            return Err(QueryError::UnsupportedSegment {
                fragment: segment.to_owned(),
                position,
            });
        }
        let condition = parse_condition(segment, position)?;
        if let Some(group) = self.groups.last_mut() {
            group.push(vec![condition]);
        }
        Ok(())
    }
}

fn is_field_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

/// A field name is one or more non-empty dot-separated parts of field characters.
fn is_valid_field(field: &str) -> bool {
    !field.is_empty()
        && field
            .split('.')
            .all(|part| !part.is_empty() && part.chars().all(is_field_char))
}

fn parse_order_by(segment: &str, position: usize) -> Result<Option<OrderBy>, QueryError> {
    let order = if let Some(field) = segment.strip_prefix("ORDERBYDESC") {
        OrderBy::desc(field)
    } else if let Some(field) = segment.strip_prefix("ORDERBY") {
        OrderBy::asc(field)
    } else {
        return Ok(None);
    };
    if !is_valid_field(&order.field) {
        return Err(QueryError::BadOrderBy {
            fragment: segment.to_owned(),
            position,
        });
    }
    Ok(Some(order))
}

/// Parses `field OP value`. The operator is the first operator token at or after the
/// second character, scanning only while the text is still a field name: symbolic
/// operators end the field-name characters, and word operators are made of them.
fn parse_condition(text: &str, position: usize) -> Result<Condition, QueryError> {
    let field_end = text.find(|c| !is_field_char(c)).unwrap_or(text.len());
    if field_end == 0 {
        return Err(QueryError::MissingField {
            fragment: text.to_owned(),
            position,
        });
    }
    // Field characters are ASCII, so every index up to `field_end` is a char boundary.
    let found = (1..=field_end).find_map(|at| {
        TOKENS
            .iter()
            .find(|(token, _)| text[at..].starts_with(token))
            .map(|(token, kind)| (at, *token, *kind))
    });
    let Some((at, token, kind)) = found else {
        return Err(QueryError::MissingOperator {
            fragment: text.to_owned(),
            position,
        });
    };
    let op = match kind {
        Token::Supported(op) => op,
        Token::Unsupported => {
            return Err(QueryError::UnsupportedOperator {
                operator: token.to_owned(),
                fragment: text.to_owned(),
                position,
            });
        }
    };
    let field = &text[..at];
    if !is_valid_field(field) {
        return Err(QueryError::BadFieldName {
            field: field.to_owned(),
            fragment: text.to_owned(),
            position,
        });
    }
    let value = &text[at + token.len()..];
    if op.is_unary() && !value.is_empty() {
        return Err(QueryError::UnexpectedValue {
            operator: op,
            fragment: text.to_owned(),
            position,
        });
    }
    Ok(Condition::new(field, op, value))
}

/// ServiceNow-like ordering of two stored values: numeric when both parse as numbers, else
/// lexical (UTC `yyyy-MM-dd HH:mm:ss` sorts correctly lexically). Empty/None sorts first.
///
/// Numbers are plain decimals (`-?digits(.digits)?`) compared exactly, so long digit
/// strings keep their order. When exactly one side is a number, the number sorts first:
/// pure "numeric if both, else lexical" is not transitive (`2 < 10` numerically,
/// `10 < 1a` and `1a < 2` lexically), and a non-total order would break both sorting
/// (`sort_by` may panic) and keyset paging, which needs `>` and ORDER BY to agree.
pub fn compare_values(a: Option<&str>, b: Option<&str>) -> Ordering {
    let a = a.filter(|s| !s.is_empty());
    let b = b.filter(|s| !s.is_empty());
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => match (Decimal::parse(a), Decimal::parse(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => a.cmp(b),
        },
    }
}

/// An exact decimal, borrowed from the text it was parsed from.
#[derive(Debug, PartialEq, Eq)]
struct Decimal<'a> {
    negative: bool,
    /// Integer digits without leading zeros.
    integer: &'a str,
    /// Fraction digits without trailing zeros.
    fraction: &'a str,
}

impl<'a> Decimal<'a> {
    fn parse(s: &'a str) -> Option<Self> {
        let (negative, unsigned) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (integer, fraction) = match unsigned.split_once('.') {
            Some((integer, fraction)) => (integer, Some(fraction)),
            None => (unsigned, None),
        };
        let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(integer) || !fraction.is_none_or(all_digits) {
            return None;
        }
        let integer = integer.trim_start_matches('0');
        let fraction = fraction.unwrap_or("").trim_end_matches('0');
        let is_zero = integer.is_empty() && fraction.is_empty();
        Some(Decimal {
            negative: negative && !is_zero,
            integer,
            fraction,
        })
    }

    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        self.integer
            .len()
            .cmp(&other.integer.len())
            .then_with(|| self.integer.cmp(other.integer))
            .then_with(|| self.fraction.cmp(other.fraction))
    }
}

impl Ord for Decimal<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
        }
    }
}

impl PartialOrd for Decimal<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Field the keyset cursor's time component lives in.
pub const UPDATED_ON: &str = "sys_updated_on";
/// Field that breaks ties between rows updated in the same second.
pub const SYS_ID: &str = "sys_id";

/// The keyset query for resuming after `(updated_on, sys_id)`, as a string:
/// `sys_updated_on>T^NQsys_updated_on=T^sys_id>ID^ORDERBYsys_updated_on^ORDERBYsys_id`,
/// with `extra` ANDed into each group. With no cursor: `sys_updated_on>=since` (or no
/// condition) plus the ORDER BYs. `since` is ignored when there is a cursor.
///
/// `extra` is parsed and distributed over the groups (so an `extra` with its own `^NQ`
/// stays correct); its ORDER BYs are dropped, since `sys_id` already makes the order total.
/// If `extra` does not parse here it is appended verbatim to each group and left for
/// ServiceNow to judge; callers should validate configured filters with
/// [`EncodedQuery::parse`] up front.
pub fn keyset(after: Option<(&str, &str)>, since: Option<&str>, extra: Option<&str>) -> String {
    let Some(extra_text) = extra else {
        return keyset_query(after, since, None).to_string();
    };
    match EncodedQuery::parse(extra_text) {
        Ok(extra) => keyset_query(after, since, Some(&extra)).to_string(),
        Err(_) => keyset_with_verbatim_extra(after, since, extra_text),
    }
}

/// The typed form of [`keyset`].
pub fn keyset_query(
    after: Option<(&str, &str)>,
    since: Option<&str>,
    extra: Option<&EncodedQuery>,
) -> EncodedQuery {
    let cursor_groups = keyset_groups(after, since);
    let extra_groups = extra.map(|q| q.groups.as_slice()).unwrap_or_default();
    let groups = if extra_groups.is_empty() {
        cursor_groups
    } else if cursor_groups.is_empty() {
        extra_groups.to_vec()
    } else {
        cursor_groups
            .iter()
            .flat_map(|cursor| {
                extra_groups
                    .iter()
                    .map(move |extra| cursor.iter().chain(extra).cloned().collect())
            })
            .collect()
    };
    EncodedQuery {
        groups,
        order_by: vec![OrderBy::asc(UPDATED_ON), OrderBy::asc(SYS_ID)],
    }
}

fn keyset_groups(after: Option<(&str, &str)>, since: Option<&str>) -> Vec<Vec<Vec<Condition>>> {
    match (after, since) {
        (Some((updated_on, sys_id)), _) => vec![
            vec![vec![Condition::new(UPDATED_ON, Operator::Gt, updated_on)]],
            vec![
                vec![Condition::new(UPDATED_ON, Operator::Eq, updated_on)],
                vec![Condition::new(SYS_ID, Operator::Gt, sys_id)],
            ],
        ],
        (None, Some(since)) => vec![vec![vec![Condition::new(UPDATED_ON, Operator::Ge, since)]]],
        (None, None) => Vec::new(),
    }
}

fn keyset_with_verbatim_extra(
    after: Option<(&str, &str)>,
    since: Option<&str>,
    extra: &str,
) -> String {
    let order = keyset_query(None, None, None).to_string();
    let groups = keyset_groups(after, since);
    if groups.is_empty() {
        return format!("{extra}^{order}");
    }
    let groups: Vec<String> = groups
        .into_iter()
        .map(|group| {
            let cursor = EncodedQuery {
                groups: vec![group],
                order_by: Vec::new(),
            };
            format!("{cursor}^{extra}")
        })
        .collect();
    format!("{}^{order}", groups.join("^NQ"))
}

#[cfg(test)]
mod tests;
