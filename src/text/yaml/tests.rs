//! Reader, merge and writer, against the original's outputs.

use serde_norway::value::{Tag, TaggedValue};
use serde_norway::Mapping;

use super::parse::MAX_DEPTH;
use super::*;

fn y(text: &str) -> Value {
    parse(text).unwrap()
}

fn s(text: &str) -> Value {
    Value::String(text.to_string())
}

fn roundtrip(v: &Value) {
    let text = render(v);
    assert_eq!(parse(&text).as_ref(), Ok(v), "rendered:\n{text}");
}

// --- parse ---

#[test]
fn deep_nesting_is_a_located_error() {
    let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert!(parse(&ok).is_ok());
    for deep in [
        "[".repeat(100_000),
        "{a: ".repeat(100_000),
        "- ".repeat(100_000),
    ] {
        let e = parse(&deep).unwrap_err();
        assert_eq!(e.message, "nested too deeply (more than 128 levels)");
        assert_eq!(e.line, Some(1));
    }
}

#[test]
fn empty_text_is_null() {
    assert_eq!(y(""), Value::Null);
    assert_eq!(y("# just a comment\n"), Value::Null);
}

#[test]
fn keys_in_source_order() {
    let v = y("zeta: 1\nalpha: 2\nmid: 3\n");
    let keys: Vec<&str> = v
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(keys, ["zeta", "alpha", "mid"]);
    assert_eq!(render(&v), "zeta: 1\nalpha: 2\nmid: 3\n");
}

#[test]
fn duplicate_keys_last_value_first_position() {
    let v = y("a: 1\nb: 2\na: 3\n");
    assert_eq!(render(&v), "a: 3\nb: 2\n");
    let v = y("{x: {p: 1}, x: {q: 2}}");
    assert_eq!(v, y("x: {q: 2}"));
}

#[test]
fn yaml11_booleans_like_data_yaml() {
    let v =
        y("a: yes\nb: No\nc: ON\nd: off\ne: y\nf: 'yes'\ng: \"no\"\nh: !!str on\ni: [yes, n]\n");
    assert_eq!(v["a"], Value::Bool(true));
    assert_eq!(v["b"], Value::Bool(false));
    assert_eq!(v["c"], Value::Bool(true));
    assert_eq!(v["d"], Value::Bool(false));
    assert_eq!(v["e"], Value::Bool(true));
    assert_eq!(v["f"], s("yes"));
    assert_eq!(v["g"], s("no"));
    assert_eq!(v["h"], s("on"));
    assert_eq!(v["i"], y("[true, false]"));
    // Keys stay text, as aeson keys do.
    let v = y("yes: 1\n");
    assert_eq!(v.as_mapping().unwrap().keys().next(), Some(&s("yes")));
    // Through an alias too.
    let v = y("a: &x yes\nb: *x\n");
    assert_eq!(v["b"], Value::Bool(true));
}

#[test]
fn scalars_resolve() {
    assert_eq!(y("1"), Value::Number(1.into()));
    assert_eq!(y("-5"), Value::Number((-5).into()));
    assert_eq!(y("1.5"), Value::Number(1.5.into()));
    assert_eq!(y("true"), Value::Bool(true));
    assert_eq!(y("~"), Value::Null);
    assert_eq!(y("'1'"), s("1"));
    assert_eq!(
        y("123456789012345678901234"),
        Value::Number(1.2345678901234568e23.into())
    );
}

#[test]
fn tagged_values_are_kept() {
    let v = y("a: !foo bar\n");
    match &v["a"] {
        Value::Tagged(t) => {
            assert_eq!(t.tag, "foo");
            assert_eq!(t.value, s("bar"));
        }
        other => panic!("not tagged: {other:?}"),
    }
    assert_eq!(render(&v), "a: !foo bar\n");
    roundtrip(&y("a: !foo\n  x: 1\nb: !seq\n  - 1\n  - 2\nc:\n- !t yes\n"));
}

#[test]
fn syntax_error_has_position() {
    let err = parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
    assert_eq!((err.line, err.column), (Some(3), Some(2)), "{err:?}");
    assert_eq!(
        err.message,
        "did not find expected ',' or ']', while parsing a flow sequence at line 2 column 4"
    );
    let err = parse("a: 1\n  b: 2\n").unwrap_err();
    assert_eq!((err.line, err.column), (Some(2), Some(4)), "{err:?}");
    assert_eq!(
        err.message,
        "mapping values are not allowed in this context"
    );
    assert_eq!(
        err.to_string(),
        "2:4: mapping values are not allowed in this context"
    );
    let err = parse("a:\n\t- b\n").unwrap_err();
    assert_eq!(err.line, Some(2), "{err:?}");
}

#[test]
fn more_than_one_document_is_an_error() {
    assert!(parse("a: 1\n---\nb: 2\n").is_err());
}

// --- cloud-config (docs/COMPATIBILITY.md#cloud-config) ---

#[test]
fn cloud_config_header_is_stripped() {
    let v = parse_cloud_config("#cloud-config\nruncmd: [ls]\n").unwrap();
    assert_eq!(v, y("runcmd: [ls]"));
    assert_eq!(parse_cloud_config("runcmd: [ls]").unwrap(), v);
    let err = parse_cloud_config("#cloud-config\na: [\n").unwrap_err();
    assert!(err.line.unwrap() >= 2, "{err:?}");
}

#[test]
fn cloud_config_render_exact() {
    let v = y("runcmd:\n- ls\n- echo hi\nhostname: box\n");
    assert_eq!(
        render_cloud_config(&v),
        "#cloud-config\n\nruncmd:\n- ls\n- echo hi\nhostname: box\n\n"
    );
    assert_eq!(parse_cloud_config(&render_cloud_config(&v)).unwrap(), v);
}

#[test]
fn cloud_config_documents_merge_lists() {
    let a = parse_cloud_config(
        "#cloud-config\nwrite_files:\n- path: /etc/a\n  content: aaa\nruncmd:\n- echo a\n",
    )
    .unwrap();
    let b = parse_cloud_config(
        "#cloud-config\nruncmd:\n- echo b\nwrite_files:\n- path: /etc/b\n  content: bbb\n",
    )
    .unwrap();
    let m = merge(a, b);
    assert_eq!(
        render_cloud_config(&m),
        "#cloud-config\n\nwrite_files:\n- path: /etc/a\n  content: aaa\n- path: /etc/b\n  \
         content: bbb\nruncmd:\n- echo a\n- echo b\n\n"
    );
}

// --- merge (docs/COMPATIBILITY.md#yaml-merge) ---

#[test]
fn merge_objects() {
    let m = merge(y("{k1: 1, k: 2}"), y("{k2: 3, k: 4}"));
    assert_eq!(m, y("{k1: 1, k: [2, 4], k2: 3}"));
    assert_eq!(render(&m), "k1: 1\nk:\n- 2\n- 4\nk2: 3\n");
    // Recursive.
    let m = merge(y("a: {x: [1]}"), y("a: {x: [2], y: 3}"));
    assert_eq!(m, y("a: {x: [1, 2], y: 3}"));
}

#[test]
fn merge_strings_concatenate() {
    assert_eq!(merge(s("Hello"), s("World")), s("HelloWorld"));
}

#[test]
fn merge_arrays() {
    assert_eq!(merge(y("[1, 2]"), y("[3]")), y("[1, 2, 3]"));
    assert_eq!(merge(y("[1, 2]"), y("x")), y("[1, 2, x]"));
    assert_eq!(merge(y("x"), y("[1, 2]")), y("[x, 1, 2]"));
    assert_eq!(merge(y("[1]"), y("{a: 1}")), y("[1, {a: 1}]"));
    assert_eq!(merge(y("{a: 1}"), y("[1]")), y("[{a: 1}, 1]"));
}

#[test]
fn merge_primitives_make_an_array() {
    assert_eq!(merge(y("1"), y("2")), y("[1, 2]"));
    assert_eq!(merge(y("true"), y("null")), y("[true, null]"));
    assert_eq!(merge(s("a"), y("1")), y("[a, 1]"));
    assert_eq!(merge(y("{a: 1}"), s("b")), y("[{a: 1}, b]"));
    assert_eq!(merge(y("!t a"), s("b")), y("[!t a, b]"));
    assert_eq!(merge(s("a"), y("!t b")), y("[a, !t b]"));
}

#[test]
fn merge_non_string_keys_kept() {
    let m = merge(y("{1: a, true: b}"), y("{1: c, null: d}"));
    assert_eq!(m, y("{1: ac, true: b, null: d}"));
    assert_eq!(render(&m), "1: ac\ntrue: b\nnull: d\n");
}

// --- render ---

#[test]
fn render_block_layout() {
    let v = y("a:\n  b: 1\n  c: [x, z]\nd:\n- e: 1\n  f: 2\n- [1, 2]\n- []\n- {}\ng: {}\nh: []\n");
    assert_eq!(
        render(&v),
        "a:\n  b: 1\n  c:\n  - x\n  - z\nd:\n- e: 1\n  f: 2\n- - 1\n  - 2\n- []\n- {}\ng: {}\nh: []\n"
    );
    assert_eq!(render(&Value::Null), "null\n");
    assert_eq!(render(&s("x")), "x\n");
    assert_eq!(render(&y("[]")), "[]\n");
    assert_eq!(render(&y("{}")), "{}\n");
    assert_eq!(
        render(&y("[1, true, null, 2.5]")),
        "- 1\n- true\n- null\n- 2.5\n"
    );
}

#[test]
fn render_quoting() {
    for (str, out) in [
        ("yes", "'yes'"),
        ("Off", "'Off'"),
        ("y", "'y'"),
        ("NULL", "'NULL'"),
        ("~", "'~'"),
        ("*", "'*'"),
        ("*x", "'*x'"),
        ("1", "'1'"),
        ("1.5", "'1.5'"),
        ("0x10", "'0x10'"),
        ("1e3", "'1e3'"),
        (".inf", "'.inf'"),
        ("-.5", "'-.5'"),
        ("2001-12-14", "'2001-12-14'"),
        ("", "''"),
        ("it's", "it's"),
        ("'q'", "'''q'''"),
        ("a: b", "'a: b'"),
        ("a #b", "'a #b'"),
        ("- a", "'- a'"),
        ("-a", "-a"),
        ("[x]", "'[x]'"),
        ("{x}", "'{x}'"),
        ("&a", "'&a'"),
        ("!a", "'!a'"),
        ("|", "'|'"),
        (">", "'>'"),
        ("%x", "'%x'"),
        ("@x", "'@x'"),
        ("`x", "'`x'"),
        ("\"x\"", "'\"x\"'"),
        (" lead", "' lead'"),
        ("trail ", "'trail '"),
        ("---", "'---'"),
        ("...", "'...'"),
        ("a:", "'a:'"),
        ("a:b", "a:b"),
        ("a#b", "a#b"),
        ("hello world", "hello world"),
        ("tab\there", "\"tab\\there\""),
        ("bell\u{7}", "\"bell\\a\""),
        ("nel\u{85}", "\"nel\\N\""),
        ("cr\r", "\"cr\\r\""),
        ("q\"\\\u{1}", "\"q\\\"\\\\\\x01\""),
        ("ünïcödé ✓", "ünïcödé ✓"),
    ] {
        assert_eq!(render(&s(str)), format!("{out}\n"), "for {str:?}");
        roundtrip(&s(str));
    }
}

#[test]
fn render_multiline_strings() {
    let v = y("a: \"line1\\nline2\\n\"\nb: \"x\\ny\"\nc: \"x\\n\\n\"\nd: \" x\\ny\"\n");
    assert_eq!(
        render(&v),
        "a: |\n  line1\n  line2\nb: |-\n  x\n  y\nc: |+\n  x\n\nd: |2-\n   x\n  y\n"
    );
    roundtrip(&v);
    // Keep-chomped at the end of the document: closed with `...`.
    let v = y("c: \"x\\n\\n\"");
    assert_eq!(render(&v), "c: |+\n  x\n\n...\n");
    assert_eq!(parse_cloud_config(&render_cloud_config(&v)).unwrap(), v);
    // Trailing spaces on a line: double quotes, as libyaml does.
    assert_eq!(render(&s("a \nb")), "\"a \\nb\"\n");
    // In a sequence and at the top.
    assert_eq!(render(&y("[\"a\\nb\"]")), "- |-\n  a\n  b\n");
    assert_eq!(render(&s("a\nb\n")), "|\n  a\n  b\n");
    // Keys with line breaks are double-quoted.
    assert_eq!(render(&y("\"a\\nb\": 1")), "\"a\\nb\": 1\n");
}

#[test]
fn render_numbers() {
    for (v, out) in [
        (Value::Number(42.into()), "42"),
        (Value::Number((-7).into()), "-7"),
        (Value::Number(u64::MAX.into()), "18446744073709551615"),
        (Value::Number(1.0.into()), "1.0"),
        (Value::Number(0.1.into()), "0.1"),
        (Value::Number(1e20.into()), "1.0e+20"),
        (Value::Number(1.5e-7.into()), "1.5e-7"),
        (Value::Number(f64::INFINITY.into()), ".inf"),
        (Value::Number(f64::NEG_INFINITY.into()), "-.inf"),
        (Value::Number(f64::NAN.into()), ".nan"),
    ] {
        assert_eq!(render(&v), format!("{out}\n"));
        roundtrip(&v);
    }
}

#[test]
fn render_complex_keys() {
    let mut m = Mapping::new();
    m.insert(y("[1, 2]"), s("list key"));
    m.insert(y("{a: 1}"), y("{b: 2, c: 3}"));
    m.insert(s(&"k".repeat(1500)), s("long"));
    m.insert(y("!t x"), s("tagged"));
    let v = Value::Mapping(m);
    roundtrip(&v);
    assert!(render(&v).starts_with("? - 1\n  - 2\n: list key\n? a: 1\n: b: 2\n  c: 3\n"));
}

#[test]
fn render_is_deterministic() {
    let v = y("b: 1\na: [x, {c: 'yes', d: \"m\\nl\"}]\n");
    assert_eq!(render(&v), render(&v.clone()));
    roundtrip(&v);
}

// --- property: parse(render(v)) == v ---

mod roundtrip_prop {
    use super::*;
    use proptest::prelude::*;

    fn nasty_string() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9 :#\\-'\"\n\t\r{}\\[\\],&*!|>%@`~?.\\\\\u{85}\u{2028}\u{feff}\u{7f}\u{0}é✓]{0,12}",
            prop::sample::select(vec![
                "", "yes", "No", "y", "n", "ON", "off", "true", "False", "null", "~", "1",
                "-1", "1.5", "0x10", "0o7", "1e3", ".inf", "-.5", ".nan", "2001-12-14",
                "- a", "a: b", "---", "...", "--- x", " #x", "|", "<<", "=", "\n", "\n\n",
                " \n", "a\n", "a\n\n", "\na", "\ta\nb", "a\n\tb\n", "x\r\ny", "#cloud-config",
            ])
            .prop_map(str::to_string),
        ]
    }

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| Value::Number(i.into())),
            any::<u64>().prop_map(|u| Value::Number(u.into())),
            any::<f64>().prop_map(|f| Value::Number(f.into())),
            nasty_string().prop_map(Value::String),
            nasty_string().prop_map(Value::String),
            nasty_string().prop_map(Value::String),
        ]
    }

    fn key() -> impl Strategy<Value = Value> {
        prop_oneof![
            4 => nasty_string().prop_map(Value::String),
            1 => scalar(),
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            4 => scalar(),
            1 => ("[a-zA-Z][a-zA-Z0-9]{0,4}", scalar()).prop_map(|(t, v)| {
                Value::Tagged(Box::new(TaggedValue { tag: Tag::new(t), value: v }))
            }),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let collection = prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Sequence),
                prop::collection::vec((key(), inner), 0..6).prop_map(|kvs| {
                    let mut m = Mapping::new();
                    for (k, v) in kvs {
                        m.insert(k, v);
                    }
                    Value::Mapping(m)
                }),
            ];
            prop_oneof![
                4 => collection.clone(),
                1 => ("[a-zA-Z][a-zA-Z0-9]{0,4}", collection).prop_map(|(t, v)| {
                    Value::Tagged(Box::new(TaggedValue { tag: Tag::new(t), value: v }))
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn render_reads_back(v in value()) {
            let text = render(&v);
            prop_assert_eq!(parse(&text), Ok(v.clone()), "rendered:\n{}", text);
            prop_assert_eq!(render(&v), text.clone());
            prop_assert_eq!(parse_cloud_config(&render_cloud_config(&v)), Ok(v), "rendered:\n{}", text);
        }

        #[test]
        fn parse_never_panics(text in "[a-z0-9 :#\\-'\"\n\t{}\\[\\],&*!|>%@?.]{0,40}") {
            let _ = parse(&text);
        }
    }
}
