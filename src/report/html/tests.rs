use std::collections::BTreeSet;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;

use super::*;
use crate::llm::Totals;
use crate::plan::{Step, StepKind};
use crate::report::{
    AttemptResult, AttemptView, FileView, Image, PlanView, Report, StepStatus, StepView,
};
use crate::run::{Input, RunInfo};

/// An element's opening: `<` and its name.
static TAG_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<([a-zA-Z][a-zA-Z0-9]*)").unwrap());
/// A whole opening tag.
static WHOLE_TAG: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"<[a-zA-Z][^>]*>").unwrap());
/// A double-quoted attribute value.
static QUOTED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r#""[^"]*""#).unwrap());

const HOSTILE: &str = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'&";

fn hostile_report() -> Report {
    let step = Step {
        id: "s1".into(),
        title: HOSTILE.into(),
        instruction: HOSTILE.into(),
        kind: StepKind::Action,
        depends_on: vec![],
        reads: vec![HOSTILE.into()],
        writes: vec![],
        fallback: Some(HOSTILE.into()),
        produces: Vec::new(),
        uses: Vec::new(),
    };
    Report {
        info: RunInfo {
            id: "run-1".into(),
            goal: HOSTILE.into(),
            inputs: vec![Input {
                path: "/x".into(),
                name: HOSTILE.into(),
                sha256: "ab".into(),
            }],
            image: HOSTILE.into(),
            options: serde_json::Value::Null,
            created: 0,
            followups: vec![HOSTILE.into()],
        },
        answer: HOSTILE.into(),
        plan: Some(PlanView {
            version: 2,
            replans: 1,
            steps: vec![StepView {
                step,
                status: StepStatus::Failed,
                attempts: 1,
                last: Some(AttemptView {
                    number: 1,
                    dir: "steps/s1/attempt-1".into(),
                    script: Some(format!("print('{HOSTILE}')  # {HOSTILE}")),
                    stdout: HOSTILE.into(),
                    stderr: format!("\u{1b}[31m{HOSTILE}"),
                    result: Some(AttemptResult {
                        problem: Some(HOSTILE.into()),
                        ..AttemptResult::default()
                    }),
                    files: vec![FileView {
                        name: format!("{HOSTILE}.png"),
                        size: 3,
                        image: Some(Image::Embedded {
                            mime: "image/png",
                            bytes: b"abc".to_vec(),
                        }),
                    }],
                }),
            }],
        }),
        totals: Totals {
            calls: 1,
            prompt_tokens: 2,
            completion_tokens: 3,
            cost: None,
        },
        wall: Duration::from_secs(1),
    }
}

#[test]
fn hostile_text_from_the_run_renders_as_text() {
    let page = html(&hostile_report());
    assert!(!page.contains("<script"), "a script element got through");
    assert!(!page.contains("<img src=x"), "an image element got through");
    // The goal, answer, title, instruction, output, problem and file name, all as text.
    assert!(
        page.matches("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;&quot;&#39;&amp;").count() >= 8,
        "{page}"
    );
    assert!(!page.contains('\u{1b}'), "terminal escapes are stripped");
    // The only elements are the report's own.
    let names: BTreeSet<&str> = TAG_NAME
        .captures_iter(&page)
        .map(|c| c.get(1).unwrap().as_str())
        .collect();
    let own = [
        "a",
        "article",
        "br",
        "code",
        "dd",
        "defs",
        "details",
        "div",
        "dl",
        "dt",
        "figcaption",
        "figure",
        "footer",
        "g",
        "h1",
        "h2",
        "h3",
        "h4",
        "head",
        "header",
        "html",
        "img",
        "li",
        "main",
        "marker",
        "meta",
        "p",
        "path",
        "pre",
        "rect",
        "section",
        "span",
        "style",
        "summary",
        "svg",
        "table",
        "td",
        "text",
        "th",
        "title",
        "tr",
        "ul",
        "body",
    ];
    for name in names {
        assert!(own.contains(&name), "unexpected element <{name}>");
    }
    // No event-handler attribute: outside quoted values, no tag holds `onerror`.
    for tag in WHOLE_TAG.find_iter(&page) {
        let bare = QUOTED.replace_all(tag.as_str(), "\"\"");
        assert!(!bare.contains("onerror"), "{}", tag.as_str());
    }
    assert_eq!(page.matches("<img ").count(), 1, "only the chart");
    assert!(page.contains("<h2>Plan (version 2, 1 replan(s))</h2>"));
    assert!(page.contains("Earlier versions are in plan-1.json;"));
}
