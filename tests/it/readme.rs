//! The README's walk-through ("Try it with curl" and "Features") against a fresh server: its
//! curl commands are parsed and sent, and each answer must have the status, the headers and
//! the JSON fields (every key, in order, at every depth) the README prints after the
//! command. Values are compared too, with digits masked (periods, timestamps and retry times
//! change from run to run). A README that drifts from the server fails here.

use crate::support::{Reply, Tally};
use serde_json::Value;

const README: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));

/// One curl command of the walk-through, and what the README says it prints.
#[derive(Debug)]
struct Step {
    line: usize,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    /// How many times it runs (a `for i in $(seq N)` loop around it).
    times: usize,
    expected: Expected,
}

#[derive(Debug, Default)]
struct Expected {
    /// From a shown `HTTP/1.1 429 ...` line; none shown means a 2xx.
    status: Option<u16>,
    header_names: Vec<String>,
    json: Option<Value>,
}

/// The ```sh blocks between "## Try it with curl" and the next "## " heading, as numbered
/// lines.
fn walkthrough_lines() -> Vec<(usize, &'static str)> {
    let start = README.find("\n## Try it with curl").expect("the README has its walk-through");
    let rest = &README[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |end| end + 3);
    let first_line = README[..start + 1].lines().count() + 1;
    let mut in_sh = false;
    let mut lines = Vec::new();
    for (index, line) in rest[..end].lines().enumerate() {
        match line.trim() {
            "```sh" => in_sh = true,
            // The end of a block ends the answer before it, as a blank line does.
            "```" if in_sh => {
                in_sh = false;
                lines.push((first_line + index, ""));
            }
            _ if in_sh => lines.push((first_line + index, line)),
            _ => {}
        }
    }
    lines
}

/// Splits a shell command into words: single and double quotes, nothing else.
fn shell_words(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for character in command.chars() {
        match (quote, character) {
            (Some(open), close) if open == close => quote = None,
            (Some(_), character) => word.get_or_insert_with(String::new).push(character),
            (None, '\'' | '"') => {
                quote = Some(character);
                word.get_or_insert_with(String::new);
            }
            (None, character) if character.is_whitespace() => words.extend(word.take()),
            (None, character) => word.get_or_insert_with(String::new).push(character),
        }
    }
    assert!(quote.is_none(), "unbalanced quotes in {command:?}");
    words.extend(word);
    words
}

fn parse_curl(line: usize, command: &str, times: usize) -> Step {
    let words = shell_words(command);
    assert_eq!(words.first().map(String::as_str), Some("curl"), "line {line}: {command}");
    let (mut method, mut path, mut headers, mut body) = (None, None, Vec::new(), None);
    let mut words = words.into_iter().skip(1);
    while let Some(word) = words.next() {
        match word.as_str() {
            "-s" | "-i" => {}
            "-o" => _ = words.next(),
            "-X" => method = words.next(),
            "-H" => {
                let header = words.next().expect("a header after -H");
                let (name, value) = header.split_once(':').expect("Name: value");
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
            "-d" => body = words.next(),
            url if url.starts_with("localhost:8080/") => path = Some(url["localhost:8080".len()..].to_owned()),
            other => panic!("line {line}: the walk-through test does not know curl's {other:?}"),
        }
    }
    let method = method.unwrap_or_else(|| if body.is_some() { "POST" } else { "GET" }.to_owned());
    let path = path.unwrap_or_else(|| panic!("line {line}: no localhost:8080 URL in {command}"));
    Step { line, method, path, headers, body, times, expected: Expected::default() }
}

/// The `# ...` lines right after a command: an optional status line, header lines, then JSON
/// that may continue over several lines.
fn parse_expected(lines: &[&str]) -> Expected {
    let mut expected = Expected::default();
    let mut json = String::new();
    for line in lines {
        let text = line.trim_start_matches('#').trim();
        if !json.is_empty() || text.starts_with('{') {
            json.push_str(text);
        } else if let Some(status) = text.strip_prefix("HTTP/1.1 ") {
            expected.status = Some(status[..3].parse().expect("a status code"));
        } else if let Some((name, _)) = text.split_once(": ") {
            expected.header_names.push(name.to_owned());
        } else {
            panic!("cannot read this answer line: {line:?}");
        }
    }
    if !json.is_empty() {
        let value = serde_json::from_str(&json).unwrap_or_else(|error| panic!("the README's JSON ({error}): {json}"));
        expected.json = Some(value);
    }
    expected
}

fn walkthrough() -> Vec<Step> {
    let lines = walkthrough_lines();
    let mut steps = Vec::new();
    let mut times = 1;
    let mut index = 0;
    while index < lines.len() {
        let (line, text) = lines[index];
        let trimmed = text.trim();
        index += 1;
        if let Some(count) = trimmed.strip_prefix("for i in $(seq ").and_then(|rest| rest.strip_suffix("); do")) {
            times = count.parse().expect("a loop count");
            continue;
        }
        if trimmed == "done" {
            times = 1;
            continue;
        }
        if !trimmed.starts_with("curl ") {
            assert!(trimmed.is_empty() || trimmed.starts_with('#'), "line {line}: not a curl command: {text}");
            continue;
        }
        let mut command = trimmed.to_owned();
        while command.ends_with('\\') {
            command.pop();
            command.push(' ');
            command.push_str(lines[index].1.trim());
            index += 1;
        }
        let mut step = parse_curl(line, &command, times);
        let answer_start = index;
        while index < lines.len() && lines[index].1.starts_with('#') {
            index += 1;
        }
        let answer: Vec<&str> = lines[answer_start..index].iter().map(|(_, text)| *text).collect();
        step.expected = parse_expected(&answer);
        steps.push(step);
    }
    steps
}

/// Digits masked: the month, timestamps and retry times change between runs.
fn masked(text: &str) -> String {
    let mut out = String::new();
    for character in text.chars() {
        if character.is_ascii_digit() {
            if !out.ends_with('#') {
                out.push('#');
            }
        } else {
            out.push(character);
        }
    }
    out
}

/// Where `actual` differs from `shown`: keys (and their order) at every depth, and values.
fn differences(at: &str, shown: &Value, actual: &Value, found: &mut Vec<String>) {
    match (shown, actual) {
        (Value::Object(shown), Value::Object(actual)) => {
            let shown_keys: Vec<&String> = shown.keys().collect();
            let actual_keys: Vec<&String> = actual.keys().collect();
            if shown_keys != actual_keys {
                found.push(format!("{at}: the README shows keys {shown_keys:?}, the server answers {actual_keys:?}"));
            }
            for (key, value) in shown {
                if let Some(actual_value) = actual.get(key) {
                    differences(&format!("{at}.{key}"), value, actual_value, found);
                }
            }
        }
        (Value::String(shown), Value::String(actual)) if masked(shown) == masked(actual) => {}
        // An id the server makes up: the README shows one run's.
        (Value::String(shown), Value::String(actual))
            if at.ends_with(".reservation_id") && is_reservation_id(shown) && is_reservation_id(actual) => {}
        // Milliseconds until a window frees up: the README shows one run's.
        (Value::Number(_), Value::Number(_)) if at.ends_with(".retry_after_ms") => {}
        // A forecast's numbers, when it runs out and which steps had data depend on the hour.
        (Value::Number(_), Value::Number(_))
            if [".projected", ".projected_low", ".projected_high"].iter().any(|key| at.ends_with(key)) => {}
        (Value::String(_) | Value::Null, Value::String(_) | Value::Null) if at.ends_with(".exhausted_at") => {}
        (Value::String(_), Value::String(_)) if at.ends_with(".method") => {}
        (shown, actual) if shown == actual => {}
        (shown, actual) => found.push(format!("{at}: the README shows {shown}, the server answers {actual}")),
    }
}

fn is_reservation_id(text: &str) -> bool {
    text.strip_prefix("res_").is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|byte| byte.is_ascii_hexdigit()))
}

/// Sends the step; a reservation id the README shows in the path is replaced by the one the
/// server answered where the README showed it (`ids`: shown -> answered).
fn send(client: &mut crate::support::Client, step: &Step, ids: &[(String, String)]) -> Reply {
    let headers: Vec<(&str, &str)> = step.headers.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
    let path = ids.iter().fold(step.path.clone(), |path, (shown, answered)| path.replace(shown, answered));
    client.request(&step.method, &path, &headers, step.body.as_deref().map(str::as_bytes))
}

#[test]
fn the_readme_walkthrough_prints_what_a_fresh_server_answers() {
    let steps = walkthrough();
    assert!(steps.len() >= 10, "the walk-through was not found whole: {steps:#?}");
    assert!(steps.iter().filter(|step| step.expected.json.is_some()).count() >= 9, "{steps:#?}");
    let tally = Tally::start_default();
    let mut client = tally.client();
    let mut found = Vec::new();
    let mut ids = Vec::new();
    for step in &steps {
        let where_ = format!("README.md:{} ({} {})", step.line, step.method, step.path);
        for _ in 1..step.times {
            let reply = send(&mut client, step, &ids);
            assert!((200..300).contains(&reply.status), "{where_}: {}", String::from_utf8_lossy(&reply.body));
        }
        let reply = send(&mut client, step, &ids);
        match step.expected.status {
            Some(status) if status != reply.status => {
                found.push(format!("{where_}: the README shows status {status}, the server answers {}", reply.status))
            }
            None if !(200..300).contains(&reply.status) => found.push(format!("{where_}: answered {}", reply.status)),
            _ => {}
        }
        for name in &step.expected.header_names {
            if reply.header(name).is_none() {
                found.push(format!("{where_}: the README shows header {name}, the server sends none"));
            }
        }
        if let Some(shown) = &step.expected.json {
            let actual = reply.json();
            if let (Some(shown), Some(answered)) = (shown["reservation_id"].as_str(), actual["reservation_id"].as_str())
            {
                ids.push((shown.to_owned(), answered.to_owned()));
            }
            differences(&where_, shown, &actual, &mut found);
        }
    }
    assert!(found.is_empty(), "the README and the server disagree:\n{}", found.join("\n"));
}

#[test]
fn shell_words_keep_quoted_json_whole() {
    let words = shell_words(r#"curl -s localhost:8080/v1/check -H 'Content-Type: application/json' -d '{"a": 1}'"#);
    assert_eq!(
        words,
        ["curl", "-s", "localhost:8080/v1/check", "-H", "Content-Type: application/json", "-d", "{\"a\": 1}"]
    );
}

/// The first ```toml block after `heading` in the README.
fn toml_after(heading: &str) -> &'static str {
    let start = README.find(heading).unwrap_or_else(|| panic!("the README has {heading:?}"));
    let rest = &README[start..];
    let open = rest.find("```toml\n").expect("a toml block follows") + "```toml\n".len();
    let close = rest[open..].find("```").expect("the block ends");
    &rest[open..open + close]
}

#[test]
fn the_readmes_email_config_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("email.toml"), toml_after("### Email alerts")).unwrap();
    let (status, stdout, stderr) = crate::support::run_tally(&["check-config", "--config", "email.toml"], dir.path());
    assert!(status.success(), "{stdout}{stderr}");
}
