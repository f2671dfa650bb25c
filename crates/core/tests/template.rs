//! Public-API tests of prompt templates: typed variables, partials, components, chat rendering,
//! and property tests that arbitrary template sources never panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;

use promptops_core::CoreError;
use promptops_core::message::{Message, Role};
use promptops_core::template::{
    ChatTemplate, ComponentLookup, MAX_INCLUDE_DEPTH, PromptTemplate, TemplateLint,
    UnknownVariables, VarType, VariableSpec, Variables,
};
use proptest::prelude::*;
use serde_json::{Value, json};

fn vars(value: Value) -> Variables {
    value
        .as_object()
        .cloned()
        .expect("variables must be a JSON object")
}

/// Renders `template` with `variables`; `expected` is the output or the error's message.
fn check(template: &PromptTemplate, variables: Value, expected: Result<&str, &str>) {
    let actual = template.render(&vars(variables));
    let actual = actual.as_deref().map_err(|e| e.to_string());
    assert_eq!(
        actual,
        expected.map_err(str::to_owned),
        "template {:?}",
        template.source()
    );
}

fn components(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, source)| ((*name).to_owned(), (*source).to_owned()))
        .collect()
}

fn with_components(source: &str, pairs: &[(&str, &str)]) -> PromptTemplate {
    PromptTemplate::builder("main", source)
        .components(components(pairs))
        .build()
        .unwrap()
}

#[test]
fn missing_variables_are_listed_at_once_sorted() {
    let t = PromptTemplate::new("greeting", "Hello {{ name }} from {{ city }}{{ name }}!").unwrap();
    let err = t.render(&Variables::new()).unwrap_err();
    assert!(matches!(
        &err,
        CoreError::MissingVariables { template, names } if template == "greeting" && names == &["city", "name"]
    ));
    assert_eq!(
        err.to_string(),
        "template \"greeting\": missing variable(s): city, name"
    );
}

#[test]
fn syntax_errors_name_template_line_and_reason() {
    let err = PromptTemplate::new("summary", "ok\nstill ok\n{% for x in %}").unwrap_err();
    let CoreError::Template {
        template,
        line,
        reason,
    } = &err
    else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!((template.as_str(), *line), ("summary", Some(3)));
    assert!(reason.starts_with("syntax error: "), "{reason}");
}

#[test]
fn declared_variables_are_type_checked_and_defaulted() {
    let t = PromptTemplate::builder(
        "report",
        "{{ title }}: {{ count }} items, tags {{ tags | join(',') }}",
    )
    .variables([
        VariableSpec::new("title", VarType::String),
        VariableSpec::new("count", VarType::Integer),
        VariableSpec::new("tags", VarType::Array).with_default(json!(["none"])),
    ])
    .build()
    .unwrap();
    let cases: &[(Value, Result<&str, &str>)] = &[
        (
            json!({"title": "T", "count": 3}),
            Ok("T: 3 items, tags none"),
        ),
        (
            json!({"title": "T", "count": 3, "tags": ["a", "b"]}),
            Ok("T: 3 items, tags a,b"),
        ),
        (
            json!({"title": "T", "count": "3"}),
            Err("template \"report\": variable `count` must be integer, got string"),
        ),
        (
            json!({"title": "T", "count": 2.5}),
            Err("template \"report\": variable `count` must be integer, got number"),
        ),
        (
            json!({"title": null, "count": 1}),
            Err("template \"report\": variable `title` must be string, got null"),
        ),
        (
            json!({"title": "T"}),
            Err("template \"report\": missing variable(s): count"),
        ),
    ];
    for (variables, expected) in cases {
        check(&t, variables.clone(), *expected);
    }
    assert_eq!(t.required_variables(), ["count", "title"]);
}

#[test]
fn every_var_type_accepts_its_json_type_only() {
    let samples = [
        json!("s"),
        json!(7),
        json!(7.5),
        json!(true),
        json!([1]),
        json!({"k": 1}),
        json!(null),
    ];
    let table: &[(VarType, [bool; 7])] = &[
        (
            VarType::String,
            [true, false, false, false, false, false, false],
        ),
        (
            VarType::Integer,
            [false, true, false, false, false, false, false],
        ),
        (
            VarType::Number,
            [false, true, true, false, false, false, false],
        ),
        (
            VarType::Boolean,
            [false, false, false, true, false, false, false],
        ),
        (
            VarType::Array,
            [false, false, false, false, true, false, false],
        ),
        (
            VarType::Object,
            [false, false, false, false, false, true, false],
        ),
        (VarType::Any, [true; 7]),
    ];
    for (kind, expected) in table {
        let accepted: Vec<bool> = samples.iter().map(|v| kind.accepts(v)).collect();
        assert_eq!(accepted, expected, "{kind}");
    }
}

#[test]
fn a_default_of_the_wrong_type_fails_the_build() {
    let err = PromptTemplate::builder("t", "{{ n }}")
        .variable(VariableSpec::new("n", VarType::Integer).with_default(json!("five")))
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "template \"t\": variable `n` must be integer, got string"
    );
}

#[test]
fn a_variable_declared_twice_fails_the_build() {
    let err = PromptTemplate::builder("t", "{{ n }}")
        .variable(VariableSpec::new("n", VarType::Any))
        .variable(VariableSpec::new("n", VarType::String))
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "template \"t\": variable `n` is declared more than once"
    );
}

#[test]
fn optional_variables_may_be_tested_but_not_printed_when_absent() {
    let t = PromptTemplate::builder(
        "t",
        "Answer.{% if context %} Context: {{ context }}{% endif %}",
    )
    .variable(VariableSpec::new("context", VarType::String).optional())
    .build()
    .unwrap();
    check(&t, json!({}), Ok("Answer."));
    check(&t, json!({"context": "docs"}), Ok("Answer. Context: docs"));
    assert!(t.required_variables().is_empty());

    let printed = PromptTemplate::builder("t", "{{ context }}")
        .variable(VariableSpec::new("context", VarType::String).optional())
        .build()
        .unwrap();
    check(
        &printed,
        json!({}),
        Err("template \"t\", line 1: undefined value: `context` is undefined"),
    );
}

#[test]
fn unknown_variables_are_allowed_by_default_and_rejected_on_request() {
    let lenient = PromptTemplate::new("t", "{{ a }}").unwrap();
    check(&lenient, json!({"a": 1, "zzz": 2}), Ok("1"));

    let strict = PromptTemplate::builder("t", "{{ a }}")
        .variable(VariableSpec::new("b", VarType::Any).optional())
        .unknown_variables(UnknownVariables::Reject)
        .build()
        .unwrap();
    check(&strict, json!({"a": 1, "b": 2}), Ok("1"));
    check(
        &strict,
        json!({"a": 1, "zz": 2, "cc": 3}),
        Err("template \"t\": unknown variable(s): cc, zz"),
    );
}

#[test]
fn partial_binds_some_variables_and_leaves_the_rest_required() {
    let t = PromptTemplate::builder(
        "support",
        "{{ company }} agent. {{ question }} ({{ tone }})",
    )
    .variable(VariableSpec::new("tone", VarType::String).with_default(json!("polite")))
    .build()
    .unwrap();
    assert_eq!(t.required_variables(), ["company", "question"]);

    let bound = t.partial(&vars(json!({"company": "Acme"}))).unwrap();
    assert_eq!(bound.required_variables(), ["question"]);
    assert_eq!(bound.source(), t.source(), "partial keeps the source");
    check(
        &bound,
        json!({"question": "Why?"}),
        Ok("Acme agent. Why? (polite)"),
    );
    check(
        &bound,
        json!({"question": "Why?", "company": "Other", "tone": "terse"}),
        Ok("Other agent. Why? (terse)"),
    );
    check(
        &bound,
        json!({}),
        Err("template \"support\": missing variable(s): question"),
    );
    // The original is unchanged.
    assert_eq!(t.required_variables(), ["company", "question"]);
}

#[test]
fn partial_checks_types_and_unknown_names() {
    let t = PromptTemplate::builder("t", "{{ n }} {{ m }}")
        .variable(VariableSpec::new("n", VarType::Integer))
        .unknown_variables(UnknownVariables::Reject)
        .build()
        .unwrap();
    assert_eq!(
        t.partial(&vars(json!({"n": "x"}))).unwrap_err().to_string(),
        "template \"t\": variable `n` must be integer, got string"
    );
    assert_eq!(
        t.partial(&vars(json!({"q": 1}))).unwrap_err().to_string(),
        "template \"t\": unknown variable(s): q"
    );
}

#[test]
fn lint_reports_declared_unused_and_used_undeclared() {
    let t = PromptTemplate::builder("t", "{{ used_declared }} {{ used_only }} {{ bound_only }}")
        .variables([
            VariableSpec::new("used_declared", VarType::Any),
            VariableSpec::new("declared_only", VarType::Any).optional(),
        ])
        .build()
        .unwrap()
        .partial(&vars(json!({"bound_only": 1})))
        .unwrap();
    let findings = t.lint();
    assert_eq!(
        findings,
        [
            TemplateLint::DeclaredUnused {
                name: "declared_only".into()
            },
            TemplateLint::UsedUndeclared {
                name: "used_only".into()
            },
        ]
    );
    assert_eq!(
        findings[0].to_string(),
        "variable `declared_only` is declared but not used"
    );
}

#[test]
fn engine_globals_and_loop_variables_are_not_required() {
    let t = PromptTemplate::new(
        "t",
        "{% set total = 0 %}{% for i in range(n) %}{{ loop.index }}{% endfor %}{{ include }}",
    );
    // `range` and `include` are engine functions and `total`/`loop` are local: `n` is the only input.
    let t = t.unwrap();
    assert_eq!(t.required_variables(), ["n"]);
    assert_eq!(t.used_variables(), ["n"]);
}

#[test]
fn seed_syntax_and_literal_braces() {
    let t = PromptTemplate::new(
        "seed",
        "You are a helpful customer support agent for {{company_name}}.\n\
         Return JSON like {\"a\": 1, \"b\": {\"c\": [1, 2]}} and never {name}.\n",
    )
    .unwrap();
    check(
        &t,
        json!({"company_name": "Acme Corp"}),
        Ok("You are a helpful customer support agent for Acme Corp.\n\
            Return JSON like {\"a\": 1, \"b\": {\"c\": [1, 2]}} and never {name}.\n"),
    );
}

#[test]
fn html_like_names_are_not_autoescaped() {
    let t = PromptTemplate::new("page.html", "{{ x }}").unwrap();
    check(&t, json!({"x": "<script>&\"'"}), Ok("<script>&\"'"));
}

#[test]
fn components_render_with_the_including_context() {
    let t = with_components(
        "Agent for {{ company }}.\n{{ include('guidelines') }}{% for step in steps %}{{ include('step') }}{% endfor %}",
        &[
            (
                "guidelines",
                "Guidelines for {{ company }}:\n{{ include('rules') }}",
            ),
            ("rules", "- be polite\n"),
            ("step", "* {{ step }}\n"),
        ],
    );
    check(
        &t,
        json!({"company": "Acme", "steps": ["greet", "solve"]}),
        Ok("Agent for Acme.\nGuidelines for Acme:\n- be polite\n* greet\n* solve\n"),
    );
}

#[test]
fn component_lookup_can_be_a_closure_or_a_shared_map() {
    let closure = |name: &str| (name == "sig").then(|| "-- {{ who }}".to_owned());
    let t = PromptTemplate::builder("mail", "Hi.\n{{ include('sig') }}")
        .components(closure)
        .build()
        .unwrap();
    check(&t, json!({"who": "Bob"}), Ok("Hi.\n-- Bob"));

    let shared: Arc<dyn ComponentLookup> = Arc::new(components(&[("sig", "-- {{ who }}!")]));
    let t = PromptTemplate::builder("mail", "{{ include('sig') }}")
        .components(shared.clone())
        .build()
        .unwrap();
    check(&t, json!({"who": "Ann"}), Ok("-- Ann!"));
}

#[test]
fn statement_include_uses_the_same_lookup() {
    // Like any block tag under trim_blocks, the statement eats the newline that follows it.
    let t = with_components(
        "{% include 'header' %}\nbody {{ include('header') }}\nend",
        &[("header", "# {{ title }}\n")],
    );
    check(
        &t,
        json!({"title": "Report"}),
        Ok("# Report\nbody # Report\n\nend"),
    );
}

#[test]
fn component_failures_name_the_chain() {
    let t = with_components(
        "{{ include(start) }}",
        &[
            ("a", "A{{ include('b') }}"),
            ("b", "B{{ include('a') }}"),
            ("self", "{{ include('self') }}"),
            ("leaf", "{{ include('nowhere') }}"),
            ("needs", "{{ x }} {{ y }} {{ given }}"),
            ("mid", "{{ include('needs') }}"),
            ("broken", "ok\n{% if %}"),
            ("main", "the top template's name"),
        ],
    );
    let cases: &[(&str, &str)] = &[
        ("a", "template \"main\": include cycle: main > a > b > a"),
        (
            "self",
            "template \"main\": include cycle: main > self > self",
        ),
        ("main", "template \"main\": include cycle: main > main"),
        (
            "leaf",
            "template \"main\": component \"nowhere\" not found (include chain: main > leaf)",
        ),
        (
            "mid",
            "template \"main > mid > needs\": missing variable(s): x, y",
        ),
        (
            "broken",
            "template \"broken\", line 2: syntax error: unexpected end of block",
        ),
    ];
    for (start, expected) in cases {
        check(&t, json!({"start": start, "given": 1}), Err(*expected));
    }
}

#[test]
fn components_nested_deeper_than_the_limit_fail() {
    let depth = MAX_INCLUDE_DEPTH;
    let lookup = move |name: &str| {
        let level: usize = name.strip_prefix('c')?.parse().ok()?;
        Some(format!("{level}{{{{ include('c{}') }}}}", level + 1))
    };
    let t = PromptTemplate::builder("main", "{{ include('c1') }}")
        .components(lookup)
        .build()
        .unwrap();
    let err = t.render(&Variables::new()).unwrap_err();
    let CoreError::ComponentChain { problem, chain, .. } = &err else {
        panic!("unexpected error {err:?}");
    };
    assert_eq!(problem, &format!("components nested deeper than {depth}"));
    let expected_chain: Vec<String> = std::iter::once("main".to_owned())
        .chain((1..=depth + 1).map(|i| format!("c{i}")))
        .collect();
    assert_eq!(chain, &expected_chain.join(" > "));

    // Exactly the limit is fine.
    let limited = move |name: &str| {
        let level: usize = name.strip_prefix('c')?.parse().ok()?;
        if level == depth {
            return Some("end".to_owned());
        }
        Some(format!("{level},{{{{ include('c{}') }}}}", level + 1))
    };
    let t = PromptTemplate::builder("main", "{{ include('c1') }}")
        .components(limited)
        .build()
        .unwrap();
    let out = t.render(&Variables::new()).unwrap();
    assert!(out.starts_with("1,2,3,") && out.ends_with(",end"), "{out}");
}

#[test]
fn statement_include_cycles_are_reported_not_overflowed() {
    let t = with_components("{% include 'loop' %}", &[("loop", "x{% include 'loop' %}")]);
    let err = t.render(&Variables::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "template \"main\": include cycle through {% include %}: main > loop > loop"
    );
}

#[test]
fn optional_variables_stay_optional_inside_components() {
    let t = PromptTemplate::builder("main", "{{ include('ctx') }}")
        .variable(VariableSpec::new("context", VarType::String).optional())
        .components(components(&[(
            "ctx",
            "{% if context %}Context: {{ context }}{% else %}No context{% endif %}",
        )]))
        .build()
        .unwrap();
    check(&t, json!({}), Ok("No context"));
    check(&t, json!({"context": "c"}), Ok("Context: c"));
}

#[test]
fn chat_template_renders_messages_in_order() {
    let system = PromptTemplate::new("system", "You support {{ company }}.").unwrap();
    let user = PromptTemplate::new("user", "{{ question }}").unwrap();
    let chat = ChatTemplate::system_user(Some(system), user);
    assert_eq!(chat.required_variables(), ["company", "question"]);
    let messages = chat
        .render(&vars(json!({"company": "Acme", "question": "Hi?"})))
        .unwrap();
    assert_eq!(
        messages,
        [
            Message::new(Role::System, "You support Acme."),
            Message::new(Role::User, "Hi?")
        ]
    );

    let bound = chat.partial(&vars(json!({"company": "Acme"}))).unwrap();
    assert_eq!(bound.required_variables(), ["question"]);
    let err = bound.render(&Variables::new()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "template \"user\": missing variable(s): question"
    );
}

#[test]
fn chat_template_rejects_only_names_no_message_knows() {
    let strict = |name: &str, source: &str| {
        PromptTemplate::builder(name, source)
            .unknown_variables(UnknownVariables::Reject)
            .build()
            .unwrap()
    };
    let chat = ChatTemplate::new()
        .message(Role::System, strict("system", "{{ a }}"))
        .message(Role::User, strict("user", "{{ b }}"))
        .message(
            Role::Assistant,
            PromptTemplate::new("assistant", "ok").unwrap(),
        );
    let messages = chat.render(&vars(json!({"a": 1, "b": 2}))).unwrap();
    let texts: Vec<String> = messages.iter().map(Message::text).collect();
    assert_eq!(texts, ["1", "2", "ok"]);
    assert_eq!(
        chat.render(&vars(json!({"a": 1, "b": 2, "c": 3})))
            .unwrap_err()
            .to_string(),
        "template \"system\": unknown variable(s): c"
    );
}

#[test]
fn variable_specs_read_from_config() {
    let specs: Vec<VariableSpec> = serde_json::from_value(json!([
        {"name": "city", "type": "string", "description": "where"},
        {"name": "n", "kind": "integer", "required": false},
        {"name": "tags", "default": ["x"]}
    ]))
    .unwrap();
    assert_eq!(
        specs,
        [
            VariableSpec::new("city", VarType::String).with_description("where"),
            VariableSpec::new("n", VarType::Integer).optional(),
            VariableSpec::new("tags", VarType::Any).with_default(json!(["x"])),
        ]
    );
    let unknown_field =
        serde_json::from_value::<VariableSpec>(json!({"name": "x", "tyep": "string"}));
    assert!(unknown_field.unwrap_err().to_string().contains("tyep"));
}

#[test]
fn templates_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<PromptTemplate>();
    assert_send_sync::<ChatTemplate>();
}

/// Pieces of Jinja syntax, names and components, glued together into adversarial sources.
fn jinja_fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("{{".to_owned()),
        Just("}}".to_owned()),
        Just("{%".to_owned()),
        Just("%}".to_owned()),
        Just("{#".to_owned()),
        Just("#}".to_owned()),
        Just("{%-".to_owned()),
        Just("-%}".to_owned()),
        Just("include(".to_owned()),
        Just(")".to_owned()),
        Just("'a'".to_owned()),
        Just("\"b\"".to_owned()),
        Just("'cycle'".to_owned()),
        Just("'missing'".to_owned()),
        Just(" include ".to_owned()),
        Just("if ".to_owned()),
        Just("endif".to_owned()),
        Just("for x in ".to_owned()),
        Just("endfor".to_owned()),
        Just("set ".to_owned()),
        Just("=".to_owned()),
        Just("|".to_owned()),
        Just("upper".to_owned()),
        Just("name".to_owned()),
        Just("items".to_owned()),
        Just("x".to_owned()),
        Just(".".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just(" ".to_owned()),
        Just("\n".to_owned()),
        "[a-z0-9 ,:+*/-]{1,4}",
    ]
}

fn fuzz_components() -> BTreeMap<String, String> {
    components(&[
        ("a", "A {{ name }}{% include \"b\" %}"),
        ("b", "B {% for x in items %}{{ x }}{% endfor %}"),
        ("cycle", "{{ include('cycle') }}"),
        ("broken", "{{ oops"),
    ])
}

fn compile_and_render(source: &str) {
    let built = PromptTemplate::builder("fuzz", source)
        .components(fuzz_components())
        .build();
    if let Ok(template) = built {
        let _ = template.required_variables();
        let _ = template.lint();
        let _ = template.render(&vars(
            json!({"name": "Ada", "items": [1, "two", null], "x": 3}),
        ));
    }
}

fn has_jinja_delimiter(text: &str) -> bool {
    ["{{", "{%", "{#"].iter().any(|d| text.contains(d))
}

proptest! {
    #[test]
    fn arbitrary_sources_never_panic(source in any::<String>()) {
        compile_and_render(&source);
    }

    #[test]
    fn jinja_like_sources_never_panic(parts in prop::collection::vec(jinja_fragment(), 0..24)) {
        compile_and_render(&parts.concat());
    }

    #[test]
    fn text_without_delimiters_renders_to_itself(
        text in any::<String>().prop_filter("no Jinja delimiters", |t| !has_jinja_delimiter(t))
    ) {
        let t = PromptTemplate::new("plain", text.clone()).unwrap();
        prop_assert_eq!(t.render(&Variables::new()).unwrap(), text);
    }

    #[test]
    fn brace_heavy_text_renders_to_itself(
        text in "[a-z{}%#\"': \n-]{0,40}".prop_filter("no Jinja delimiters", |t| !has_jinja_delimiter(t))
    ) {
        let t = PromptTemplate::new("plain", text.clone()).unwrap();
        prop_assert_eq!(t.render(&Variables::new()).unwrap(), text);
    }
}
