//! Parser, printer and merge, against the original's outputs.

use std::cmp::Ordering;

use super::parse::{ErlError, Trailing, MAX_DEPTH};
use super::*;

#[test]
fn reserved_words_are_quoted() {
    assert_eq!(
        render(&ErlTerm::Tuple(vec![
            ErlTerm::Atom("end".into()),
            ErlTerm::Atom("ok".into())
        ])),
        "{'end', ok}."
    );
    assert_eq!(parse("'of'."), Ok(ErlTerm::Atom("of".into())));
}
use proptest::prelude::*;

fn s(x: &str) -> ErlTerm {
    ErlTerm::String(x.to_string())
}
fn a(x: &str) -> ErlTerm {
    ErlTerm::Atom(x.to_string())
}
fn i(x: i128) -> ErlTerm {
    ErlTerm::Integer(x)
}
fn l(xs: Vec<ErlTerm>) -> ErlTerm {
    ErlTerm::List(xs)
}
fn t(xs: Vec<ErlTerm>) -> ErlTerm {
    ErlTerm::Tuple(xs)
}
fn p(text: &str) -> ErlTerm {
    match parse(text) {
        Ok(term) => term,
        Err(e) => panic!("parse of {text:?} failed: {e}"),
    }
}
fn err(text: &str) -> ErlError {
    match parse(text) {
        Ok(term) => panic!("parse of {text:?} unexpectedly gave {term:?}"),
        Err(e) => e,
    }
}

// ---- parser ---------------------------------------------------------

#[test]
fn parses_strings_with_every_escape() {
    assert_eq!(p("\"\"."), s(""));
    assert_eq!(p("\"hello world\"."), s("hello world"));
    assert_eq!(p("\"multi\nline\"."), s("multi\nline"));
    assert_eq!(p(r#""\^a\^A\^z\^Z\^c"."#), s("\x01\x01\x1a\x1a\x03"));
    assert_eq!(p(r#""\x{41}\x{1F600}\x{0000000061}"."#), s("A\u{1F600}a"));
    assert_eq!(p(r#""\x41\x4a\x4A"."#), s("AJJ"));
    assert_eq!(p(r#""\101\0\7\779"."#), s("A\0\x07?9"));
    assert_eq!(
        p(r#""\b\d\e\f\n\r\s\t\v\\\"\'"."#),
        s("\x08\x7f\x1b\x0c\n\r \t\x0b\\\"'")
    );
    assert_eq!(
        p("\"caf\u{e9} % not a comment\"."),
        s("caf\u{e9} % not a comment")
    );
}

#[test]
fn parses_integers() {
    assert_eq!(p("42."), i(42));
    assert_eq!(p("-42."), i(-42));
    assert_eq!(p("+42."), i(42));
    assert_eq!(p("007."), i(7));
    assert_eq!(p("16#ff."), i(255));
    assert_eq!(p("16#FF."), i(255));
    assert_eq!(p("-16#fF."), i(-255));
    assert_eq!(p("2#1010."), i(10));
    assert_eq!(p("8#777."), i(511));
    assert_eq!(p("36#zz."), i(35 * 36 + 35));
    assert_eq!(p("10#99."), i(99));
    assert_eq!(p("170141183460469231731687303715884105727."), i(i128::MAX));
    assert_eq!(p("-170141183460469231731687303715884105728."), i(i128::MIN));
}

#[test]
fn parses_floats() {
    assert_eq!(p("1.5."), ErlTerm::Float(1.5));
    assert_eq!(p("-1.5."), ErlTerm::Float(-1.5));
    assert_eq!(p("+0.25."), ErlTerm::Float(0.25));
    assert_eq!(p("1.5e3."), ErlTerm::Float(1500.0));
    assert_eq!(p("1.5E-3."), ErlTerm::Float(0.0015));
    assert_eq!(p("2.0e+2."), ErlTerm::Float(200.0));
    assert_eq!(p("0.1."), ErlTerm::Float(0.1));
    assert_eq!(p("[1.0e-2, 3]."), l(vec![ErlTerm::Float(0.01), i(3)]));
    // `5.` is the integer 5 followed by the final dot.
    assert_eq!(p("5."), i(5));
}

#[test]
fn parses_chars() {
    assert_eq!(p("$a."), ErlTerm::Char('a'));
    assert_eq!(p("$ ."), ErlTerm::Char(' '));
    assert_eq!(p("$$."), ErlTerm::Char('$'));
    assert_eq!(p("$%."), ErlTerm::Char('%'));
    assert_eq!(p(r"$\n."), ErlTerm::Char('\n'));
    assert_eq!(p(r"$\'."), ErlTerm::Char('\''));
    assert_eq!(p(r"$\x{263a}."), ErlTerm::Char('\u{263a}'));
    assert_eq!(p("$\u{e9}."), ErlTerm::Char('\u{e9}'));
    assert_eq!(
        p("[$ , $,]."),
        l(vec![ErlTerm::Char(' '), ErlTerm::Char(',')])
    );
}

#[test]
fn parses_atoms() {
    assert_eq!(p("ok."), a("ok"));
    assert_eq!(p("node@host_1."), a("node@host_1"));
    assert_eq!(p("aB9."), a("aB9"));
    assert_eq!(p("'Hello World'."), a("Hello World"));
    assert_eq!(p(r"'it\'s'."), a("it's"));
    assert_eq!(p(r"'a\\b\x{e9}'."), a("a\\b\u{e9}"));
    assert_eq!(p("''."), a(""));
    assert_eq!(p("'_'."), a("_"));
    assert_eq!(p("'\"'."), a("\""));
    // Parsec's `lower`/`alphaNum` accept Unicode letters, so do we.
    assert_eq!(p("caf\u{e9}."), a("caf\u{e9}"));
}

#[test]
fn parses_binaries() {
    assert_eq!(p("<<>>."), ErlTerm::Binary(String::new()));
    assert_eq!(p("<< >>."), ErlTerm::Binary(String::new()));
    assert_eq!(p("<<\"abc\">>."), ErlTerm::Binary("abc".into()));
    assert_eq!(p("<< \"a\\nb\" >>."), ErlTerm::Binary("a\nb".into()));
    assert_eq!(p("<<\"\">>."), ErlTerm::Binary(String::new()));
}

#[test]
fn parses_lists_and_tuples() {
    assert_eq!(p("[]."), l(vec![]));
    assert_eq!(p("[ ]."), l(vec![]));
    assert_eq!(p("{}."), t(vec![]));
    assert_eq!(p("[a,b]."), l(vec![a("a"), a("b")]));
    assert_eq!(p("[ a , b ]."), l(vec![a("a"), a("b")]));
    assert_eq!(p("{ok, 1}."), t(vec![a("ok"), i(1)]));
    // One trailing comma is accepted, as by the original.
    assert_eq!(p("[a,]."), l(vec![a("a")]));
    assert_eq!(p("{a, }."), t(vec![a("a")]));
    assert_eq!(
        p("[{kernel,[{inet_dist_listen_min,9100},{x,<<\"y\">>}]},{sasl,[]}]."),
        l(vec![
            t(vec![
                a("kernel"),
                l(vec![
                    t(vec![a("inet_dist_listen_min"), i(9100)]),
                    t(vec![a("x"), ErlTerm::Binary("y".into())]),
                ]),
            ]),
            t(vec![a("sasl"), l(vec![])]),
        ])
    );
    assert_eq!(p("[[[]]]."), l(vec![l(vec![l(vec![])])]));
    assert_eq!(p("{[{}]}."), t(vec![l(vec![t(vec![])])]));
}

#[test]
fn whitespace_and_comments() {
    assert_eq!(p(" \n\t ok."), a("ok"));
    assert_eq!(p("ok.\n\n"), a("ok"));
    // Lenient: the original rejects whitespace before a top-level '.'.
    assert_eq!(p("ok ."), a("ok"));
    assert_eq!(p("[a] .\n"), l(vec![a("a")]));
    assert_eq!(p("[\n  a\n  ,\n  b\n]."), l(vec![a("a"), a("b")]));
    let text =
        "%% sys.config\n[ % first\n  a, % the a\n  %% whole line\n  b\n] % done\n.\n% trailer";
    assert_eq!(p(text), l(vec![a("a"), a("b")]));
    assert_eq!(p("ok.%"), a("ok"));
}

#[test]
fn errors_name_position_and_expectation() {
    let e = err("ok");
    assert_eq!((e.offset, e.line, e.column), (2, 1, 3));
    assert!(e.message.contains("expected '.'"), "{}", e.message);
    assert!(e.message.contains("end of input"), "{}", e.message);

    let e = err("[a b].");
    assert_eq!((e.offset, e.line, e.column), (3, 1, 4));
    assert!(e.message.contains("expected ',' or ']'"), "{}", e.message);

    let e = err("{a b}.");
    assert!(e.message.contains("',' or '}'"), "{}", e.message);

    let e = err("[a,\n  ,b].");
    assert_eq!((e.offset, e.line, e.column), (6, 2, 3));
    assert!(e.message.contains("an Erlang term or ']'"), "{}", e.message);

    let e = err("\"abc");
    assert_eq!(e.offset, 0);
    assert!(e.message.contains("unterminated string"), "{}", e.message);

    let e = err("'abc");
    assert!(e.message.contains("unterminated atom"), "{}", e.message);

    let e = err("[\"\u{e9}\\z\"].");
    assert_eq!((e.offset, e.line, e.column), (4, 1, 4));
    assert!(e.message.contains("unknown escape"), "{}", e.message);

    for bad in [
        "\"\\^1\".",
        "\"\\x{}\".",
        "\"\\x{41\".",
        "\"\\xg0\".",
        "\"\\",
    ] {
        let e = err(bad);
        assert_eq!(e.line, 1, "{bad}");
    }
    let e = err("\"\\x{110000}\".");
    assert!(
        e.message.contains("not a Unicode scalar value"),
        "{}",
        e.message
    );
    let e = err("\"\\x{d800}\".");
    assert!(
        e.message.contains("not a Unicode scalar value"),
        "{}",
        e.message
    );

    let e = err("37#1.");
    assert!(e.message.contains("invalid radix"), "{}", e.message);
    let e = err("1#1.");
    assert!(e.message.contains("invalid radix"), "{}", e.message);
    let e = err("16#.");
    assert!(e.message.contains("base-16 digit"), "{}", e.message);
    let e = err("2#2.");
    assert!(e.message.contains("base-2 digit"), "{}", e.message);
    let e = err("1.5e.");
    assert!(e.message.contains("exponent"), "{}", e.message);
    let e = err(".5.");
    assert!(e.message.contains("0.5"), "{}", e.message);
    let e = err("[-.5].");
    assert!(e.message.contains("0.5"), "{}", e.message);
    let e = err("1.0e999.");
    assert!(e.message.contains("out of range"), "{}", e.message);
    let e = err("170141183460469231731687303715884105728.");
    assert!(e.message.contains("out of range"), "{}", e.message);
    let e = err("-.");
    assert!(e.message.contains("expected a digit"), "{}", e.message);

    let e = err("<<a>>.");
    assert!(e.message.contains("<<\"string\">>"), "{}", e.message);
    let e = err("<<\"a\".");
    assert!(e.message.contains("'>>'"), "{}", e.message);
    let e = err("<a.");
    assert!(e.message.contains("'<<'"), "{}", e.message);

    let e = err("$");
    assert!(e.message.contains("after '$'"), "{}", e.message);
    let e = err("");
    assert!(
        e.message.contains("expected an Erlang term"),
        "{}",
        e.message
    );
    let e = err("Var.");
    assert!(
        e.message.contains("expected an Erlang term"),
        "{}",
        e.message
    );
    let e = err("#{a => 1}.");
    assert_eq!(e.offset, 0);
    let e = err("[,].");
    assert_eq!(e.offset, 1);
    let e = err("[a,,].");
    assert_eq!(e.offset, 3);

    let e = err("[a,\n b\n");
    assert_eq!((e.line, e.column), (3, 1));
    assert!(e.to_string().starts_with("line 3, column 1: "), "{e}");
}

#[test]
fn nesting_is_bounded() {
    let ok = format!("{}{}.", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    let term = p(&ok);
    let rendered = render(&term);
    assert_eq!(rendered.len(), 2 * MAX_DEPTH + 1);
    assert_eq!(p(&rendered), term);

    let deep = MAX_DEPTH + 1;
    let too_deep = format!("{}{}.", "{".repeat(deep), "}".repeat(deep));
    let e = err(&too_deep);
    assert_eq!(e.offset, MAX_DEPTH);
    assert!(e.message.contains("nested too deeply"), "{}", e.message);

    // Far deeper unterminated input fails cleanly too.
    let e = err(&"[".repeat(1_000_000));
    assert_eq!(e.offset, MAX_DEPTH);
}

// ---- renderer -------------------------------------------------------

#[test]
fn renders_scalars() {
    assert_eq!(render(&ErlTerm::Binary(String::new())), "<<>>.");
    assert_eq!(render(&ErlTerm::Binary("a\"b".into())), "<<\"a\\\"b\">>.");
    assert_eq!(render(&ErlTerm::Char('a')), "$a.");
    assert_eq!(render(&ErlTerm::Char(' ')), "$ .");
    assert_eq!(render(&ErlTerm::Char('\'')), "$\\'.");
    assert_eq!(render(&ErlTerm::Char('"')), "$\".");
    assert_eq!(render(&ErlTerm::Char('\\')), "$\\\\.");
    assert_eq!(render(&ErlTerm::Char('\n')), "$\\x{a}.");
    assert_eq!(render(&ErlTerm::Char('\u{263a}')), "$\\x{263a}.");
    assert_eq!(render(&i(42)), "42.");
    assert_eq!(render(&i(-7)), "-7.");
    assert_eq!(render(&i(i128::MIN)), format!("{}.", i128::MIN));
}

#[test]
fn renders_atoms() {
    assert_eq!(render(&a("ok")), "ok.");
    assert_eq!(render(&a("node@host_1X")), "node@host_1X.");
    assert_eq!(render(&a("Ok")), "'Ok'.");
    assert_eq!(render(&a("hello world")), "'hello world'.");
    assert_eq!(render(&a("it's")), "'it\\'s'.");
    assert_eq!(render(&a("a\\b")), "'a\\\\b'.");
    assert_eq!(render(&a("")), "''.");
    assert_eq!(render(&a("_")), "'_'.");
    assert_eq!(render(&a("9lives")), "'9lives'.");
    assert_eq!(render(&a("a-b")), "'a-b'.");
    assert_eq!(render(&a("tab\there")), "'tab\\x{9}here'.");
    assert_eq!(render(&a("caf\u{e9}")), "'caf\\x{e9}'.");
    assert_eq!(render(&a("\"")), "'\"'.");
}

#[test]
fn renders_strings() {
    assert_eq!(render(&s("")), "\"\".");
    assert_eq!(render(&s("plain 'text' %")), "\"plain 'text' %\".");
    assert_eq!(
        render(&s("q\"b\\n\nt\tdel\x7f\u{e9}\u{1F600}\0")),
        "\"q\\\"b\\\\n\\x{a}t\\x{9}del\\x{7f}\\x{e9}\\x{1f600}\\x{0}\"."
    );
}

#[test]
fn renders_floats_like_haskell_show() {
    let cases: [(f64, &str); 20] = [
        (1.5, "1.5"),
        (0.1, "0.1"),
        (0.01, "1.0e-2"),
        (0.001, "1.0e-3"),
        (1.23e-5, "1.23e-5"),
        (1.0, "1.0"),
        (100.0, "100.0"),
        (0.3, "0.3"),
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (-2.5, "-2.5"),
        (123456.789, "123456.789"),
        (9999999.0, "9999999.0"),
        (1.0e7, "1.0e7"),
        (12345678.9, "1.23456789e7"),
        (1.0e22, "1.0e22"),
        (5.0e-324, "5.0e-324"),
        (f64::MAX, "1.7976931348623157e308"),
        (f64::INFINITY, "Infinity"),
        (f64::NEG_INFINITY, "-Infinity"),
    ];
    for (x, want) in cases {
        assert_eq!(render(&ErlTerm::Float(x)), format!("{want}."), "{x:e}");
    }
    assert_eq!(render(&ErlTerm::Float(f64::NAN)), "NaN.");
}

#[test]
fn renders_short_lists_and_tuples_on_one_line() {
    assert_eq!(render(&l(vec![])), "[].");
    assert_eq!(render(&t(vec![])), "{}.");
    assert_eq!(render(&l(vec![a("a"), i(1), s("x")])), "[a, 1, \"x\"].");
    assert_eq!(render(&t(vec![a("ok"), l(vec![t(vec![])])])), "{ok, [{}]}.");
}

fn items(n: usize) -> Vec<ErlTerm> {
    (1..=n).map(|k| a(&format!("item{k:02}"))).collect()
}

#[test]
fn long_lists_break_one_element_per_line() {
    let want: String = (1..=12)
        .map(|k| format!("item{k:02}"))
        .collect::<Vec<_>>()
        .join(",\n ");
    assert_eq!(render(&l(items(12))), format!("[{want}]."));
    assert_eq!(render(&t(items(12))), format!("{{{want}}}."));

    // The first element stays on the bracket's line and breaks itself.
    let inner = want.replace('\n', "\n ");
    assert_eq!(
        render(&l(vec![l(items(12)), a("b")])),
        format!("[[{inner}],\n b].")
    );
}

#[test]
fn ribbon_of_67_characters_decides_at_indent_0() {
    let fits = l(vec![a("a"), s(&"x".repeat(59))]);
    let rendered = render(&fits);
    assert_eq!(rendered.len(), 67);
    assert!(!rendered.contains('\n'));

    let too_long = l(vec![a("a"), s(&"x".repeat(60))]);
    assert_eq!(render(&too_long), format!("[a,\n \"{}\"].", "x".repeat(60)));
}

#[test]
fn nested_proplist_aligns_after_the_bracket() {
    let term = p(
        "[{kernel, [{inet_dist_listen_min, 9100}, {inet_dist_listen_max, 9200}, \
                  {logger_level, info}]}].",
    );
    assert_eq!(
        render(&term),
        "[{kernel,\n  [{inet_dist_listen_min, 9100},\n   {inet_dist_listen_max, 9200},\n   \
         {logger_level, info}]}]."
    );
}

#[test]
fn line_length_of_100_decides_at_deep_indentation() {
    // 40 single-element lists around [b, X, c]: X starts a line indented
    // by 41 columns, where only 100 - 41 = 59 columns are left (less than
    // the ribbon of 67). X is followed by ','.
    fn wrapped(x: ErlTerm) -> ErlTerm {
        let mut term = l(vec![a("b"), x, a("c")]);
        for _ in 0..40 {
            term = l(vec![term]);
        }
        term
    }
    let pad = " ".repeat(41);
    let close = format!("c{}.", "]".repeat(41));
    // flat X is 58 characters + ',' = 59: fits.
    let x = l(vec![s(&"s".repeat(25)), s(&"t".repeat(25))]);
    let flat_x = format!("[\"{}\", \"{}\"]", "s".repeat(25), "t".repeat(25));
    assert_eq!(flat_x.len(), 58);
    assert_eq!(
        render(&wrapped(x)),
        format!("{}b,\n{pad}{flat_x},\n{pad}{close}", "[".repeat(41))
    );
    // flat X is 59 characters + ',' = 60: breaks.
    let x = l(vec![s(&"s".repeat(25)), s(&"t".repeat(26))]);
    assert_eq!(
        render(&wrapped(x)),
        format!(
            "{}b,\n{pad}[\"{}\",\n{pad} \"{}\"],\n{pad}{close}",
            "[".repeat(41),
            "s".repeat(25),
            "t".repeat(26)
        )
    );
}

// ---- merge ----------------------------------------------------------

fn m(x: &str, y: &str) -> String {
    render(&merge(p(x), p(y)))
}

#[test]
fn merges_lists_and_primitives() {
    assert_eq!(m("[a].", "[123]."), "[a, 123].");
    assert_eq!(m("[a,b,c].", "{ok,value}."), "[a, b, c, {ok, value}].");
    assert_eq!(m("{ok,value}.", "[a,b]."), "[{ok, value}, a, b].");
    assert_eq!(m("a.", "b."), "[a, b].");
    assert_eq!(m("[].", "[]."), "[].");
    assert_eq!(m("\"x\".", "1."), "[\"x\", 1].");
}

#[test]
fn merge_result_order() {
    assert_eq!(
        m(
            "[x, {b,1}, y, {a,1}, {c,1}, {t,1,2}].",
            "[z, {d,1}, {c,2}, w]."
        ),
        "[x, y, {t, 1, 2}, {a, 1}, {b, 1}, {c, [1, 2]}, z, w, {d, 1}]."
    );
    // Duplicate keys on one side are matched one-to-one in sorted order.
    assert_eq!(m("[{k,1},{k,2}].", "[{k,3}]."), "[{k, 2}, {k, [1, 3]}].");
    assert_eq!(
        m("[{k,1},{k,2}].", "[{k,3},{k,4}]."),
        "[{k, [1, 3]}, {k, [2, 4]}]."
    );
    // The merged pair takes the right-hand key; -0.0 and 0.0 are equal.
    assert_eq!(m("[{0.0,a}].", "[{-0.0,b}]."), "[{-0.0, [a, b]}].");
}

#[test]
fn merge_sorts_keys_structurally() {
    let keys = [
        "{t}", "[l]", "<<>>", "$c", "b", "a", "2", "1", "2.0", "1.0", "\"s\"",
    ];
    let list = format!(
        "[{}].",
        keys.iter()
            .map(|k| format!("{{{k}, v}}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert_eq!(
        m(&list, "[]."),
        "[{\"s\", v},\n {1.0, v},\n {2.0, v},\n {1, v},\n {2, v},\n {a, v},\n {b, v},\n {$c, v},\n \
         {<<>>, v},\n {[l], v},\n {{t}, v}]."
    );
    assert_eq!(a("a").structural_cmp(&a("b")), Ordering::Less);
    assert_eq!(s("z").structural_cmp(&ErlTerm::Float(0.0)), Ordering::Less);
    assert_eq!(
        l(vec![i(1)]).structural_cmp(&l(vec![i(1), i(0)])),
        Ordering::Less
    );
    assert_eq!(
        t(vec![i(2)]).structural_cmp(&t(vec![i(1), i(0)])),
        Ordering::Greater
    );
    assert_eq!(
        ErlTerm::Float(f64::NAN).structural_cmp(&ErlTerm::Float(f64::INFINITY)),
        Ordering::Greater
    );
}

#[test]
fn merges_sys_config_proplists() {
    let base = "%% base.config\n\
                [{kernel, [{inet_dist_listen_min, 9000}, {logger_level, info}]},\n \
                {sasl, [{errlog_type, error}]}].\n";
    let overlay = "[{kernel, [{inet_dist_listen_max, 9200}]}, {ssl, []}].";
    assert_eq!(
        m(base, overlay),
        "[{sasl, [{errlog_type, error}]},\n {kernel,\n  [{inet_dist_listen_min, 9000},\n   \
         {logger_level, info},\n   {inet_dist_listen_max, 9200}]},\n {ssl, []}]."
    );
    // Equal keys with scalar values become a list of both (docs/COMPATIBILITY.md#erlang-merge).
    assert_eq!(
        m(
            "[{kernel, [{inet_dist_listen_min, 9000}]}].",
            "[{kernel, [{inet_dist_listen_min, 9100}]}]."
        ),
        "[{kernel, [{inet_dist_listen_min, [9000, 9100]}]}]."
    );
}

// ---- properties -----------------------------------------------------

fn any_term() -> impl Strategy<Value = ErlTerm> {
    let leaf = prop_oneof![
        any::<String>().prop_map(ErlTerm::String),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(ErlTerm::Float),
        any::<i128>().prop_map(ErlTerm::Integer),
        any::<String>().prop_map(ErlTerm::Atom),
        "[a-z][a-zA-Z0-9@_]{0,8}".prop_map(ErlTerm::Atom),
        any::<char>().prop_map(ErlTerm::Char),
        any::<String>().prop_map(ErlTerm::Binary),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(ErlTerm::List),
            prop::collection::vec(inner, 0..8).prop_map(ErlTerm::Tuple),
        ]
    })
}

fn proplist(keys: &std::collections::BTreeSet<u8>, tag: i128) -> ErlTerm {
    l(keys
        .iter()
        .map(|k| t(vec![a(&format!("k{k}")), i(tag)]))
        .collect())
}

proptest! {
    #[test]
    fn parse_inverts_render(term in any_term()) {
        let text = render(&term);
        prop_assert_eq!(parse(&text), Ok(term), "rendered: {}", text);
    }

    #[test]
    fn merged_proplist_length(
        left in prop::collection::btree_set(0u8..20, 0..15),
        right in prop::collection::btree_set(0u8..20, 0..15),
    ) {
        let common = left.intersection(&right).count();
        let merged = merge(proplist(&left, 1), proplist(&right, 2));
        let ErlTerm::List(items) = merged else {
            return Err(TestCaseError::fail("merge of lists is not a list"));
        };
        prop_assert_eq!(items.len(), left.len() + right.len() - common);
    }

    #[test]
    fn parse_never_panics(text in any::<String>()) {
        let _ = parse(&text);
    }

    #[test]
    fn parse_never_panics_on_term_like_input(
        text in "[\\[\\]{}a-zA-Z0-9$\"'\\\\., <>#%\n^xe+\\-_@]{0,60}"
    ) {
        if let Ok(term) = parse(&text) {
            prop_assert_eq!(parse(&render(&term)), Ok(term));
        }
    }
}

#[test]
fn text_after_the_final_dot_is_ignored_and_located() {
    let (term, trailing) = parse_document("[ok].\n% done\n  extra {\n").unwrap();
    assert_eq!(term, ErlTerm::List(vec![ErlTerm::Atom("ok".into())]));
    assert_eq!(
        trailing,
        Some(Trailing {
            offset: 15,
            line: 3,
            column: 3
        })
    );
    assert_eq!(parse("ok. extra").unwrap(), ErlTerm::Atom("ok".into()));
    assert_eq!(parse_document("ok. % only a comment\n").unwrap().1, None);
}
