//! Table tests of the access-control engine: every case of
//! `fixtures/access/cases.txt` (its header documents the format) through the public
//! API, `decide`, `decide_all`, `check_resource` and `check_write`.
//!
//! Covers SMART App Launch 2.x "Scopes and Launch Context" (scope syntax, v1/v2
//! permissions, filters, patient/user/system contexts) and FHIR R4 RESTful API
//! interactions, compartments (`CompartmentDefinition/patient`) and operations.

use hearth_security::{
    AdminArea, Decision, Interaction, Permission, Principal, ResourceFacts, check_resource,
    check_write, decide, decide_all, first_denial, parse_scopes,
};

const CASES: &str = include_str!("../../../fixtures/access/cases.txt");

/// Cases cannot silently vanish: the fixture must keep at least this many.
const MIN_CASES: usize = 80;

#[derive(Default)]
struct Case {
    line: usize,
    title: String,
    principal: Option<Principal>,
    perms: Vec<Permission>,
    token: Option<String>,
    launch: Option<String>,
    request: Option<Interaction>,
    entries: Vec<Interaction>,
    expect: Option<String>,
    patients: Option<String>,
    filters: Option<String>,
    checks: Vec<(Check, String)>,
}

/// A resource check of a case: `check_resource` (visible/hidden) or `check_write`
/// (writable/unwritable) must give the expected answer.
#[derive(Clone, Copy, Debug)]
enum Check {
    Visible,
    Hidden,
    Writable,
    Unwritable,
}

fn parse_cases(text: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut current: Option<Case> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') {
            continue;
        }
        if line.is_empty() {
            cases.extend(current.take());
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            panic!("cases.txt:{}: expected `key: value`, got `{line}`", n + 1);
        };
        let value = value.trim();
        let at = format!("cases.txt:{}", n + 1);
        if key == "case" {
            assert!(
                current.is_none(),
                "{at}: `case:` must start a block after a blank line"
            );
            current = Some(Case {
                line: n + 1,
                title: value.to_owned(),
                ..Case::default()
            });
            continue;
        }
        let Some(case) = current.as_mut() else {
            panic!("{at}: `{key}:` outside a case (a block starts with `case:`)");
        };
        match key {
            "principal" => case.principal = Some(principal(value, &at)),
            "perms" => case.perms.extend(value.split_ascii_whitespace().map(|p| {
                p.parse::<Permission>()
                    .unwrap_or_else(|e| panic!("{at}: {e}"))
            })),
            "token" => case.token = Some(value.to_owned()),
            "launch" => case.launch = Some(value.to_owned()),
            "request" => case.request = Some(interaction(value, &at)),
            "entry" => case.entries.push(interaction(value, &at)),
            "expect" => case.expect = Some(value.to_owned()),
            "patients" => case.patients = Some(value.to_owned()),
            "filters" => case.filters = Some(value.to_owned()),
            "visible" => case.checks.push((Check::Visible, value.to_owned())),
            "hidden" => case.checks.push((Check::Hidden, value.to_owned())),
            "writable" => case.checks.push((Check::Writable, value.to_owned())),
            "unwritable" => case.checks.push((Check::Unwritable, value.to_owned())),
            _ => panic!("{at}: unknown key `{key}`"),
        }
    }
    cases.extend(current);
    cases
}

fn principal(text: &str, at: &str) -> Principal {
    let mut words = text.split_ascii_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("anonymous"), None, None) => Principal::anonymous(),
        (Some("user"), Some(name), None) => Principal::user(name),
        (Some("client"), Some(id), None) => Principal::client(id),
        _ => panic!("{at}: principal must be `user <name>`, `client <id>` or `anonymous`"),
    }
}

fn admin_area(text: &str, at: &str) -> AdminArea {
    AdminArea::parse(text).unwrap_or_else(|| panic!("{at}: unknown admin area `{text}`"))
}

fn interaction(text: &str, at: &str) -> Interaction {
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    let instance = |target: &str| -> (String, String) {
        match target.split_once('/') {
            Some((t, id)) => (t.to_owned(), id.to_owned()),
            None => panic!("{at}: expected `Type/id`, got `{target}`"),
        }
    };
    match words.as_slice() {
        ["capabilities"] => Interaction::capabilities(),
        ["smart-configuration"] => Interaction::smart_configuration(),
        ["transaction"] => Interaction::transaction(),
        ["batch"] => Interaction::batch(),
        ["admin", area] => Interaction::admin(admin_area(area, at)),
        ["read", target] => {
            let (t, id) = instance(target);
            Interaction::read(&t, &id)
        }
        ["vread", target] => {
            let (t, id) = instance(target);
            Interaction::vread(&t, &id)
        }
        ["history", "*"] => Interaction::history_system(),
        ["history", target] => match target.split_once('/') {
            Some((t, id)) => Interaction::history_instance(t, id),
            None => Interaction::history_type(target),
        },
        ["search", "*"] => Interaction::search_system(),
        ["search", target] => match target.split('/').collect::<Vec<_>>().as_slice() {
            [t] => Interaction::search_type(t),
            [ct, cid, t] => Interaction::search_compartment(ct, cid, t),
            _ => panic!("{at}: expected `search T` or `search C/id/T`"),
        },
        ["create", t] => Interaction::create(t),
        ["update", target] => match target.split_once('/') {
            Some((t, id)) => Interaction::update(t, id),
            None => Interaction::update_conditional(target),
        },
        ["patch", target] => {
            let (t, id) = instance(target);
            Interaction::patch(&t, &id)
        }
        ["delete", target] => match target.split_once('/') {
            Some((t, id)) => Interaction::delete(t, id),
            None => Interaction::delete_conditional(target),
        },
        ["op", name] => Interaction::operation_system(name),
        ["op", name, target] => match target.split_once('/') {
            Some((t, id)) => Interaction::operation_instance(t, id, name),
            None => Interaction::operation_type(target, name),
        },
        _ => panic!("{at}: unknown request `{text}`"),
    }
}

/// `T/id [in=p1,p2] [has=name=value]...` → (type, id, patients, pairs it matches).
type ResourceSpec = (String, String, Vec<String>, Vec<(String, String)>);

fn resource_spec(text: &str, at: &str) -> ResourceSpec {
    let mut words = text.split_ascii_whitespace();
    let Some((t, id)) = words.next().and_then(|w| w.split_once('/')) else {
        panic!("{at}: a resource is `Type/id …`");
    };
    let mut patients = Vec::new();
    let mut has = Vec::new();
    for word in words {
        if let Some(list) = word.strip_prefix("in=") {
            patients.extend(list.split(',').map(str::to_owned));
        } else if let Some(pair) = word.strip_prefix("has=") {
            let Some((name, value)) = pair.split_once('=') else {
                panic!("{at}: `has=` needs `name=value`");
            };
            has.push((name.to_owned(), value.to_owned()));
        } else {
            panic!("{at}: unknown resource attribute `{word}`");
        }
    }
    (t.to_owned(), id.to_owned(), patients, has)
}

fn build_principal(case: &Case, at: &str) -> Principal {
    let Some(base) = case.principal.clone() else {
        panic!("{at}: the case has no `principal:`");
    };
    let mut p = base.with_permissions(case.perms.iter().cloned());
    if let Some(token) = &case.token {
        let (scopes, _refused) = parse_scopes(token);
        p = p.with_scopes(scopes);
    }
    if let Some(launch) = &case.launch {
        p = p.with_launch_patient(launch.as_str());
    }
    p
}

/// Runs one case; returns the failures, if any.
fn run(case: &Case) -> Vec<String> {
    let at = format!("cases.txt:{} `{}`", case.line, case.title);
    let mut failures = Vec::new();
    let principal = build_principal(case, &at);
    let Some(request) = &case.request else {
        return vec![format!("{at}: no `request:`")];
    };
    let Some(expect) = &case.expect else {
        return vec![format!("{at}: no `expect:`")];
    };
    let decision = decide(&principal, request);
    let entry_decisions = decide_all(&principal, &case.entries);
    let outcome: Result<&Decision, String> = match (&decision, first_denial(&entry_decisions)) {
        (Decision::Deny { .. }, _) => Ok(&decision),
        (_, Some((i, reason))) => Err(format!("entry {i}: {reason}")),
        (_, None) => Ok(&decision),
    };
    let got = match &outcome {
        Ok(d) => d.to_string(),
        Err(entry_denial) => format!("deny: {entry_denial}"),
    };
    let expect_ok = match expect.split_once(' ').unwrap_or((expect, "")) {
        ("allow", "") => matches!(outcome, Ok(d) if d.is_allowed()),
        ("allow", "narrowed") => {
            matches!(outcome, Ok(Decision::Allow { narrowing }) if !narrowing.is_unrestricted())
        }
        ("allow", "unrestricted") => {
            matches!(outcome, Ok(Decision::Allow { narrowing }) if narrowing.is_unrestricted())
        }
        ("deny", text) if !text.is_empty() => match &outcome {
            Ok(Decision::Deny { reason }) => reason.contains(text),
            Err(entry_denial) => entry_denial.contains(text),
            Ok(_) => false,
        },
        _ => {
            failures.push(format!("{at}: bad expect `{expect}`"));
            true
        }
    };
    if !expect_ok {
        failures.push(format!("{at}: expected `{expect}`, got `{got}`"));
    }

    let narrowing = decision.narrowing();
    let request_type = request.res_type.as_deref().unwrap_or("");
    if let Some(expected) = &case.patients {
        match narrowing {
            None => failures.push(format!("{at}: `patients:` on a denied request")),
            Some(n) => {
                let got = match n.patients_for(request_type) {
                    None => "any".to_owned(),
                    Some(set) => set.into_iter().collect::<Vec<_>>().join(" "),
                };
                if &got != expected {
                    failures.push(format!(
                        "{at}: patients: expected `{expected}`, got `{got}`"
                    ));
                }
            }
        }
    }
    if let Some(expected) = &case.filters {
        match narrowing {
            None => failures.push(format!("{at}: `filters:` on a denied request")),
            Some(n) => {
                let got = match n.filters_for(request_type) {
                    None => "none".to_owned(),
                    Some(alternatives) => alternatives
                        .iter()
                        .map(|pairs| {
                            pairs
                                .iter()
                                .map(|(k, v)| format!("{k}={v}"))
                                .collect::<Vec<_>>()
                                .join("&")
                        })
                        .collect::<Vec<_>>()
                        .join(" "),
                };
                if &got != expected {
                    failures.push(format!("{at}: filters: expected `{expected}`, got `{got}`"));
                }
            }
        }
    }
    for (check, spec) in &case.checks {
        let Some(n) = narrowing else {
            failures.push(format!("{at}: resource check on a denied request"));
            continue;
        };
        let (t, id, patients, has) = resource_spec(spec, &at);
        let matches =
            |_: &str, filter: &[(String, String)]| filter.iter().all(|pair| has.contains(pair));
        let facts = ResourceFacts::new(&t, &id, patients).with_filter(&matches);
        let ok = match check {
            Check::Visible => check_resource(&principal, n, &facts),
            Check::Hidden => !check_resource(&principal, n, &facts),
            Check::Writable => check_write(n, &facts),
            Check::Unwritable => !check_write(n, &facts),
        };
        if !ok {
            failures.push(format!("{at}: expected {check:?}: {spec}"));
        }
    }
    failures
}

#[test]
fn access_cases() {
    let cases = parse_cases(CASES);
    assert!(
        cases.len() >= MIN_CASES,
        "fixtures/access/cases.txt has {} cases; at least {MIN_CASES} are expected",
        cases.len()
    );
    let mut titles = std::collections::BTreeSet::new();
    for case in &cases {
        assert!(
            titles.insert(case.title.as_str()),
            "cases.txt:{}: duplicate case title `{}`",
            case.line,
            case.title
        );
    }
    let failures: Vec<String> = cases.iter().flat_map(run).collect();
    assert!(
        failures.is_empty(),
        "{} of {} access cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn the_format_refuses_unknown_keys() {
    let result =
        std::panic::catch_unwind(|| parse_cases("case: x\nprincipal: anonymous\nexpekt: allow\n"));
    assert!(result.is_err());
}
