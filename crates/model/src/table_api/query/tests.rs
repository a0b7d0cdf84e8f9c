use std::cmp::Ordering;
use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

fn cond(field: &str, op: Operator, value: &str) -> Condition {
    Condition::new(field, op, value)
}

fn parse(s: &str) -> EncodedQuery {
    match EncodedQuery::parse(s) {
        Ok(q) => q,
        Err(e) => panic!("{s:?} should parse: {e}"),
    }
}

fn only_condition(s: &str) -> Condition {
    let q = parse(s);
    assert_eq!(q.groups.len(), 1, "{s:?} should have one group");
    assert_eq!(q.groups[0].len(), 1, "{s:?} should have one clause");
    assert_eq!(q.groups[0][0].len(), 1, "{s:?} should have one condition");
    q.groups[0][0][0].clone()
}

fn row(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |field: &str| map.get(field).cloned()
}

#[test]
fn every_operator_parses_to_its_variant() {
    let cases = [
        ("state=2", cond("state", Operator::Eq, "2")),
        ("state!=6", cond("state", Operator::NotEq, "6")),
        ("priority>2", cond("priority", Operator::Gt, "2")),
        ("priority>=2", cond("priority", Operator::Ge, "2")),
        ("priority<3", cond("priority", Operator::Lt, "3")),
        ("priority<=2", cond("priority", Operator::Le, "2")),
        ("priorityIN1,2,3", cond("priority", Operator::In, "1,2,3")),
        (
            "priorityNOT IN1,2",
            cond("priority", Operator::NotIn, "1,2"),
        ),
        (
            "numberSTARTSWITHINC",
            cond("number", Operator::StartsWith, "INC"),
        ),
        (
            "u_refENDSWITH-2025",
            cond("u_ref", Operator::EndsWith, "-2025"),
        ),
        (
            "short_descriptionLIKEemail",
            cond("short_description", Operator::Like, "email"),
        ),
        (
            "short_descriptionNOT LIKEtest",
            cond("short_description", Operator::NotLike, "test"),
        ),
        (
            "short_descriptionNOTLIKEtest",
            cond("short_description", Operator::NotLike, "test"),
        ),
        ("closed_atISEMPTY", cond("closed_at", Operator::IsEmpty, "")),
        (
            "closed_atISNOTEMPTY",
            cond("closed_at", Operator::IsNotEmpty, ""),
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(only_condition(text), expected, "parsing {text:?}");
    }
}

#[test]
fn greater_or_equal_on_a_timestamp_is_not_read_as_greater_than_equals() {
    assert_eq!(
        only_condition("sys_updated_on>=2024-01-01 00:00:00"),
        cond("sys_updated_on", Operator::Ge, "2024-01-01 00:00:00")
    );
    assert_eq!(
        only_condition("sys_updated_on<=2024-01-01 00:00:00"),
        cond("sys_updated_on", Operator::Le, "2024-01-01 00:00:00")
    );
}

#[test]
fn values_may_contain_equals_signs_and_operator_words() {
    assert_eq!(
        only_condition("u_formula=a=b"),
        cond("u_formula", Operator::Eq, "a=b")
    );
    assert_eq!(
        only_condition("descriptionLIKEx>=y"),
        cond("description", Operator::Like, "x>=y")
    );
    assert_eq!(
        only_condition("short_description=NOT IN LIKE"),
        cond("short_description", Operator::Eq, "NOT IN LIKE")
    );
}

#[test]
fn dot_walked_field_names_are_kept_whole() {
    assert_eq!(
        only_condition("business_service.department=abc"),
        cond("business_service.department", Operator::Eq, "abc")
    );
    assert_eq!(
        only_condition("assigned_to.manager.emailSTARTSWITHjo"),
        cond("assigned_to.manager.email", Operator::StartsWith, "jo")
    );
}

#[test]
fn or_binds_tighter_than_and_which_binds_tighter_than_nq() {
    let q = parse("a=1^ORb=2^c=3^NQd=4^e=5^ORf=6");
    assert_eq!(
        q.groups,
        vec![
            vec![
                vec![cond("a", Operator::Eq, "1"), cond("b", Operator::Eq, "2")],
                vec![cond("c", Operator::Eq, "3")],
            ],
            vec![
                vec![cond("d", Operator::Eq, "4")],
                vec![cond("e", Operator::Eq, "5"), cond("f", Operator::Eq, "6")],
            ],
        ]
    );
    // (a=1 OR b=2) AND c=3, OR d=4 AND (e=5 OR f=6)
    assert!(q.matches(&row(&[("b", "2"), ("c", "3")])));
    assert!(!q.matches(&row(&[("a", "1")])));
    assert!(q.matches(&row(&[("d", "4"), ("f", "6")])));
    assert!(!q.matches(&row(&[("d", "4"), ("c", "3")])));
}

#[test]
fn order_by_terms_are_collected_from_anywhere_in_order() {
    let q = parse("ORDERBYDESCpriority^active=true^ORDERBYnumber^EQ");
    assert_eq!(
        q.groups,
        vec![vec![vec![cond("active", Operator::Eq, "true")]]]
    );
    assert_eq!(
        q.order_by,
        vec![OrderBy::desc("priority"), OrderBy::asc("number")]
    );
}

#[test]
fn trailing_eq_and_empty_segments_are_ignored() {
    assert_eq!(parse("active=true^EQ"), parse("active=true"));
    assert_eq!(parse("active=true^^"), parse("active=true"));
    assert_eq!(parse("a=1^NQ"), parse("a=1"));
}

#[test]
fn the_empty_query_matches_every_row() {
    let q = parse("");
    assert_eq!(q, EncodedQuery::match_all());
    assert!(q.matches(&row(&[])));
    assert_eq!(q.to_string(), "");
}

#[test]
fn display_writes_servicenow_encoded_form() {
    let text = "a=1^ORb!=2^c.dIN x,y^NQeISEMPTY^fNOT LIKE%^ORDERBYa^ORDERBYDESCb";
    assert_eq!(parse(text).to_string(), text);
    assert_eq!(parse("ORDERBYsys_id").to_string(), "ORDERBYsys_id");
}

#[test]
fn a_missing_operator_error_names_the_fragment_and_its_position() {
    let err = EncodedQuery::parse("active=true^bogus").unwrap_err();
    assert_eq!(
        err,
        QueryError::MissingOperator {
            fragment: "bogus".into(),
            position: 12
        }
    );
    let message = err.to_string();
    assert!(message.contains("\"bogus\""), "{message}");
    assert!(message.contains("byte 12"), "{message}");
}

#[test]
fn malformed_conditions_are_rejected_with_the_reason() {
    type IsExpected = fn(&QueryError) -> bool;
    let cases: [(&str, IsExpected); 8] = [
        ("=5", |e| matches!(e, QueryError::MissingField { .. })),
        ("a..b=1", |e| matches!(e, QueryError::BadFieldName { .. })),
        ("closed_atISEMPTYyes", |e| {
            matches!(e, QueryError::UnexpectedValue { .. })
        }),
        (
            "sys_class_nameINSTANCEOFtask",
            |e| matches!(e, QueryError::UnsupportedOperator { operator, .. } if operator == "INSTANCEOF"),
        ),
        (
            "priorityBETWEEN1@3",
            |e| matches!(e, QueryError::UnsupportedOperator { operator, .. } if operator == "BETWEEN"),
        ),
        ("a=1^RLQUERYincident.problem_id,>=1^ENDRLQUERY", |e| {
            matches!(e, QueryError::UnsupportedSegment { position: 4, .. })
        }),
        ("^ORa=1", |e| {
            matches!(e, QueryError::DanglingOr { position: 1, .. })
        }),
        ("a=1^ORDERBY", |e| {
            matches!(e, QueryError::BadOrderBy { position: 4, .. })
        }),
    ];
    for (text, is_expected) in cases {
        match EncodedQuery::parse(text) {
            Ok(q) => panic!("{text:?} should not parse, got {q:?}"),
            Err(e) => assert!(is_expected(&e), "{text:?} gave unexpected error {e:?}"),
        }
    }
}

#[test]
fn errors_after_or_report_the_position_of_the_condition() {
    let err = EncodedQuery::parse("a=1^ORb").unwrap_err();
    assert_eq!(
        err,
        QueryError::MissingOperator {
            fragment: "b".into(),
            position: 6
        }
    );
}

#[test]
fn compare_values_is_numeric_when_both_are_numbers() {
    assert_eq!(compare_values(Some("9"), Some("10")), Ordering::Less);
    assert_eq!(compare_values(Some("-5"), Some("3")), Ordering::Less);
    assert_eq!(compare_values(Some("-5"), Some("-30")), Ordering::Greater);
    assert_eq!(compare_values(Some("1.50"), Some("1.5")), Ordering::Equal);
    assert_eq!(compare_values(Some("007"), Some("7")), Ordering::Equal);
    assert_eq!(compare_values(Some("0.45"), Some("0.5")), Ordering::Less);
    assert_eq!(compare_values(Some("-0"), Some("0")), Ordering::Equal);
    // Longer than any float keeps exactly.
    assert_eq!(
        compare_values(
            Some("123456789012345678901234567890"),
            Some("123456789012345678901234567891")
        ),
        Ordering::Less
    );
}

#[test]
fn compare_values_is_lexical_otherwise_and_sorts_utc_times_chronologically() {
    assert_eq!(compare_values(Some("abc"), Some("abd")), Ordering::Less);
    assert_eq!(
        compare_values(Some("2024-01-02 00:00:00"), Some("2024-01-10 00:00:00")),
        Ordering::Less
    );
    assert_eq!(
        compare_values(Some("2024-01-01 09:59:59"), Some("2024-01-01 10:00:00")),
        Ordering::Less
    );
    // Exponents, infinities and stray signs are not numbers here.
    assert_eq!(compare_values(Some("1e3"), Some("999")), Ordering::Greater);
    assert_eq!(compare_values(Some("inf"), Some("-inf")), Ordering::Greater);
}

/// Every triple from values that mix numbers (equal ones spelled differently, negative,
/// fractional) with text that sorts between them lexically: a non-transitive comparison
/// (e.g. "numeric if both, else lexical": 2 < 10 < 1a < 2) shows up here.
#[test]
fn compare_values_is_a_total_order() {
    let values = [
        None,
        Some(""),
        Some("0"),
        Some("-0"),
        Some("1"),
        Some("01"),
        Some("1.0"),
        Some("2"),
        Some("10"),
        Some("-1"),
        Some("-0.5"),
        Some("-0a"),
        Some("0a"),
        Some("1a"),
        Some("a"),
        Some("2024-01-01 00:00:00"),
    ];
    for a in values {
        for b in values {
            assert_eq!(
                compare_values(a, b),
                compare_values(b, a).reverse(),
                "{a:?} vs {b:?}"
            );
            for c in values {
                if compare_values(a, b).is_le() && compare_values(b, c).is_le() {
                    assert!(
                        compare_values(a, c).is_le(),
                        "{a:?} <= {b:?} <= {c:?} but not {a:?} <= {c:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn compare_values_puts_empty_first_and_numbers_before_text() {
    assert_eq!(compare_values(None, Some("")), Ordering::Equal);
    assert_eq!(compare_values(None, Some("0")), Ordering::Less);
    assert_eq!(compare_values(Some(""), Some("a")), Ordering::Less);
    assert_eq!(compare_values(Some("a"), None), Ordering::Greater);
    assert_eq!(compare_values(Some("10"), Some("1a")), Ordering::Less);
    assert_eq!(compare_values(Some("2"), Some("1a")), Ordering::Less);
}

#[test]
fn conditions_evaluate_like_servicenow() {
    let r = row(&[
        ("priority", "2"),
        ("short_description", "Email is DOWN"),
        ("closed_at", ""),
        ("business_service.department", "d1"),
    ]);
    let yes = [
        "priority=2",
        "priority=2.0",
        "priority!=3",
        "priority>1",
        "priority>=2",
        "priority<10",
        "priority<=2",
        "priorityIN1,2,3",
        "priorityNOT IN3,4",
        "short_descriptionSTARTSWITHemail",
        "short_descriptionENDSWITHdown",
        "short_descriptionLIKEis d",
        "short_descriptionNOT LIKEup",
        "closed_atISEMPTY",
        "resolved_atISEMPTY",
        "resolved_at=",
        "short_descriptionISNOTEMPTY",
        "business_service.department=d1",
        "resolved_atNOT LIKEx",
    ];
    let no = [
        "priority=3",
        "priority!=2",
        "priority>2",
        "priority<2",
        "priorityIN1,3",
        "priorityNOT IN2",
        "short_descriptionSTARTSWITHdown",
        "short_descriptionLIKEup",
        "closed_atISNOTEMPTY",
        "resolved_at<2024-01-01 00:00:00",
        "resolved_at>=",
        "business_service.department=d2",
    ];
    for text in yes {
        assert!(parse(text).matches(&r), "{text:?} should match");
    }
    for text in no {
        assert!(!parse(text).matches(&r), "{text:?} should not match");
    }
}

#[test]
fn keyset_with_a_cursor_is_exactly_the_designed_query() {
    assert_eq!(
        keyset(Some(("2024-01-01 10:00:00", "abc123")), None, None),
        "sys_updated_on>2024-01-01 10:00:00^NQsys_updated_on=2024-01-01 10:00:00\
         ^sys_id>abc123^ORDERBYsys_updated_on^ORDERBYsys_id"
    );
    // `since` only matters for the first page.
    assert_eq!(
        keyset(
            Some(("2024-01-01 10:00:00", "abc123")),
            Some("2023-01-01 00:00:00"),
            None
        ),
        keyset(Some(("2024-01-01 10:00:00", "abc123")), None, None)
    );
}

#[test]
fn keyset_without_a_cursor_starts_at_since_or_at_the_beginning() {
    assert_eq!(
        keyset(None, Some("2024-01-01 00:00:00"), None),
        "sys_updated_on>=2024-01-01 00:00:00^ORDERBYsys_updated_on^ORDERBYsys_id"
    );
    assert_eq!(
        keyset(None, None, None),
        "ORDERBYsys_updated_on^ORDERBYsys_id"
    );
    assert_eq!(
        keyset(None, None, Some("active=true")),
        "active=true^ORDERBYsys_updated_on^ORDERBYsys_id"
    );
}

#[test]
fn keyset_ands_the_extra_filter_into_each_group() {
    assert_eq!(
        keyset(Some(("T", "ID")), None, Some("active=true^ORpriority=1")),
        "sys_updated_on>T^active=true^ORpriority=1^NQsys_updated_on=T^sys_id>ID\
         ^active=true^ORpriority=1^ORDERBYsys_updated_on^ORDERBYsys_id"
    );
    assert_eq!(
        keyset(None, Some("S"), Some("active=true^ORDERBYnumber")),
        "sys_updated_on>=S^active=true^ORDERBYsys_updated_on^ORDERBYsys_id"
    );
}

#[test]
fn keyset_distributes_an_extra_filter_with_its_own_groups() {
    let q = parse(&keyset(Some(("T", "ID")), None, Some("a=1^NQb=2")));
    assert_eq!(q.groups.len(), 4);
    let after_t = row(&[("sys_updated_on", "U"), ("sys_id", "A"), ("b", "2")]);
    let same_t_lower_id = row(&[("sys_updated_on", "T"), ("sys_id", "A"), ("a", "1")]);
    let neither = row(&[("sys_updated_on", "U"), ("sys_id", "Z")]);
    assert!(q.matches(&after_t));
    assert!(!q.matches(&same_t_lower_id));
    assert!(!q.matches(&neither));
}

#[test]
fn and_keeps_each_side_of_a_user_query_with_nq_under_the_other_condition() {
    // `category=network^NQpriority=1` ANDed with `active=true`: a plain `^` would give
    // `category=network^NQpriority=1^active=true`, which lets every network row through
    // whatever `active` says.
    let user = parse("category=network^NQpriority=1");
    let scope = parse("active=true^ORDERBYnumber");
    let both = scope.and(&user);
    assert_eq!(
        both.to_string(),
        "active=true^category=network^NQactive=true^priority=1^ORDERBYnumber"
    );
    let inactive_network = row(&[("active", "false"), ("category", "network")]);
    let active_priority_one = row(&[("active", "true"), ("priority", "1")]);
    assert!(!both.matches(&inactive_network));
    assert!(both.matches(&active_priority_one));
    assert_eq!(user.and(&EncodedQuery::match_all()), user);
    assert_eq!(EncodedQuery::match_all().and(&user).groups, user.groups);
}

#[test]
fn fields_names_every_field_a_condition_uses_once() {
    let q = parse("category=a^ORcategory=b^NQpriority<3^assigned_to.department=x^ORDERBYnumber");
    assert_eq!(
        q.fields(),
        ["category", "priority", "assigned_to.department"]
    );
}

#[test]
fn keyset_appends_an_unparsable_extra_filter_verbatim() {
    assert_eq!(
        keyset(Some(("T", "ID")), None, Some("priorityBETWEEN1@3")),
        "sys_updated_on>T^priorityBETWEEN1@3^NQsys_updated_on=T^sys_id>ID\
         ^priorityBETWEEN1@3^ORDERBYsys_updated_on^ORDERBYsys_id"
    );
    assert_eq!(
        keyset(None, None, Some("priorityBETWEEN1@3")),
        "priorityBETWEEN1@3^ORDERBYsys_updated_on^ORDERBYsys_id"
    );
}

/// Pages through a table the way the fetcher will, with many rows sharing one second, and
/// checks every row comes back exactly once and in order.
#[test]
fn keyset_query_returns_each_row_once_when_many_rows_share_a_second() {
    let mut rows: Vec<HashMap<String, String>> = (0..57)
        .map(|i| {
            let second = if i < 40 { 0 } else { i % 3 + 1 };
            HashMap::from([
                ("sys_id".to_owned(), format!("{:032x}", (i * 7919) % 1009)),
                (
                    "sys_updated_on".to_owned(),
                    format!("2024-05-01 12:00:0{second}"),
                ),
                ("active".to_owned(), (i % 2 == 0).to_string()),
            ])
        })
        .collect();
    rows.reverse();
    let page_size = 5;
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<(String, String)> = None;
    loop {
        let text = keyset(
            cursor.as_ref().map(|(t, id)| (t.as_str(), id.as_str())),
            Some("2024-05-01 00:00:00"),
            Some("active=true"),
        );
        let q = parse(&text);
        let mut page: Vec<&HashMap<String, String>> = rows
            .iter()
            .filter(|r| q.matches(&|f: &str| r.get(f).cloned()))
            .collect();
        page.sort_by(|a, b| {
            q.compare_rows(&|f: &str| a.get(f).cloned(), &|f: &str| b.get(f).cloned())
        });
        page.truncate(page_size);
        let Some(last) = page.last() else { break };
        cursor = Some((last["sys_updated_on"].clone(), last["sys_id"].clone()));
        seen.extend(page.iter().map(|r| r["sys_id"].clone()));
    }
    let mut expected: Vec<&HashMap<String, String>> =
        rows.iter().filter(|r| r["active"] == "true").collect();
    // Some ids are all digits: they order numerically and before those with letters.
    expected.sort_by(|a, b| {
        compare_values(Some(&a["sys_updated_on"]), Some(&b["sys_updated_on"]))
            .then_with(|| compare_values(Some(&a["sys_id"]), Some(&b["sys_id"])))
    });
    let expected: Vec<String> = expected.iter().map(|r| r["sys_id"].clone()).collect();
    assert_eq!(seen, expected);
}

#[test]
fn compare_rows_applies_order_by_terms_in_turn() {
    let q = parse("ORDERBYDESCpriority^ORDERBYnumber");
    let a = row(&[("priority", "10"), ("number", "INC2")]);
    let b = row(&[("priority", "9"), ("number", "INC1")]);
    let c = row(&[("priority", "10"), ("number", "INC1")]);
    assert_eq!(q.compare_rows(&a, &b), Ordering::Less);
    assert_eq!(q.compare_rows(&c, &a), Ordering::Less);
    assert_eq!(q.compare_rows(&a, &a), Ordering::Equal);
}

fn field_strategy() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_]{0,5}(\\.[a-z][a-z0-9_]{0,5}){0,2}"
}

fn operator_strategy() -> impl Strategy<Value = Operator> {
    prop::sample::select(vec![
        Operator::Eq,
        Operator::NotEq,
        Operator::Gt,
        Operator::Ge,
        Operator::Lt,
        Operator::Le,
        Operator::In,
        Operator::NotIn,
        Operator::StartsWith,
        Operator::EndsWith,
        Operator::Like,
        Operator::NotLike,
        Operator::IsEmpty,
        Operator::IsNotEmpty,
    ])
}

/// Conditions the encoded form can express: no `^` in values, no value on unary
/// operators, and no value that would merge with its operator into a longer one
/// (`>` + `=x` reads back as `>=`, `IN` + `STANCEOF` as `INSTANCEOF`).
fn condition_strategy() -> impl Strategy<Value = Condition> {
    (
        field_strategy(),
        operator_strategy(),
        "[a-zA-Z0-9 :=,.<>!_@%-]{0,12}",
    )
        .prop_map(|(field, op, value)| {
            let value = if op.is_unary() { String::new() } else { value };
            Condition { field, op, value }
        })
        .prop_filter("value would merge with its operator", |c| {
            !value_merges_with_operator(c)
        })
}

fn value_merges_with_operator(c: &Condition) -> bool {
    let merges_into_or_equal =
        matches!(c.op, Operator::Gt | Operator::Lt) && c.value.starts_with('=');
    let merges_into_instanceof = c.op == Operator::In && c.value.starts_with("STANCEOF");
    merges_into_or_equal || merges_into_instanceof
}

fn query_strategy() -> impl Strategy<Value = EncodedQuery> {
    let clause = prop::collection::vec(condition_strategy(), 1..4);
    let group = prop::collection::vec(clause, 1..4);
    let order = (field_strategy(), any::<bool>())
        .prop_map(|(field, descending)| OrderBy { field, descending });
    (
        prop::collection::vec(group, 0..4),
        prop::collection::vec(order, 0..3),
    )
        .prop_map(|(groups, order_by)| EncodedQuery { groups, order_by })
}

proptest! {
    #[test]
    fn display_then_parse_round_trips_random_queries(q in query_strategy()) {
        let text = q.to_string();
        prop_assert_eq!(EncodedQuery::parse(&text), Ok(q), "text was {:?}", text);
    }

    #[test]
    fn and_matches_exactly_the_rows_both_queries_match(
        a in query_strategy(),
        b in query_strategy(),
        values in prop::collection::vec(("[a-c]", "[0-2]"), 0..6),
    ) {
        let pairs: Vec<(String, String)> = values;
        let lookup = |field: &str| {
            let first = field.split('.').next().unwrap_or(field);
            pairs
                .iter()
                .find(|(name, _)| first.starts_with(name.as_str()))
                .map(|(_, value)| value.clone())
        };
        prop_assert_eq!(
            a.and(&b).matches(&lookup),
            a.matches(&lookup) && b.matches(&lookup)
        );
    }

    #[test]
    fn whatever_parses_prints_back_to_the_same_query(
        text in "([a-z.]{1,3}(=|!=|>|>=|<|<=|IN|NOT IN|LIKE|ISEMPTY|STARTSWITH)[a-z=<>, ]{0,4}|OR|NQ|EQ|ORDERBY[a-z]{1,2}|\\^){0,12}"
    ) {
        if let Ok(q) = EncodedQuery::parse(&text) {
            prop_assert_eq!(EncodedQuery::parse(&q.to_string()), Ok(q), "input was {:?}", text);
        }
    }
}
