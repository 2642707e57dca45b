//! The HTML report: one self-contained page (inline CSS and SVG, charts as `data:` URIs, no
//! script, nothing fetched). Every piece of text from the run is escaped: a script, a title or
//! an output line can only ever show up as text.

use std::fmt::Write;

use super::{AttemptView, FileView, Image, Report, StepStatus, StepView, graph, highlight};
use crate::plan::StepKind;

/// Characters of stdout and stderr shown per step (the tail: errors come last).
const TAIL_CHARS: usize = 6000;

/// `text` with the five HTML-significant characters escaped; safe in content and in quoted
/// attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Standard base64 with padding, for `data:` URIs.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The last `max` characters of `text`, and how many bytes were left out before them.
fn tail(text: &str, max: usize) -> (&str, usize) {
    if text.len() <= max {
        return (text, 0);
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    // Start on a whole line when one begins near the cut.
    if let Some(newline) = text[start..].find('\n').filter(|&n| n < 200) {
        start += newline + 1;
    }
    (&text[start..], start)
}

fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        _ => format!("{:.1} MiB", n as f64 / 1_048_576.0),
    }
}

fn millis(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.2} s", ms as f64 / 1000.0)
    }
}

/// The CSS class of a status, shared by the graph and the step sections.
pub(crate) fn class(status: StepStatus) -> &'static str {
    match status {
        StepStatus::Done => "done",
        StepStatus::Failed => "failed",
        StepStatus::NotRun => "notrun",
    }
}

const STYLE: &str = r#"
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg: #f6f8fa; --done: #1a7f37;
  --done-bg: #dafbe1; --failed: #cf222e; --failed-bg: #ffebe9; --notrun: #6e7781; --notrun-bg: #eaeef2; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 15px/1.5 -apple-system, "Segoe UI", "Helvetica Neue", Arial, "DejaVu Sans", sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 28px 24px 48px; }
h1 { font-size: 26px; line-height: 1.3; margin: 4px 0 10px; overflow-wrap: anywhere; }
h2 { font-size: 19px; margin: 0 0 12px; }
h3 { font-size: 17px; margin: 0 0 6px; overflow-wrap: anywhere; }
h4 { font-size: 13px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin: 18px 0 6px; }
section, article { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 18px 22px; margin: 0 0 18px; }
.kicker { color: var(--muted); font-size: 13px; margin: 0; }
.summary { display: flex; flex-wrap: wrap; gap: 8px; margin: 0; }
.pill { display: inline-block; border-radius: 999px; padding: 1px 10px; font-size: 12.5px; font-weight: 600;
  background: var(--notrun-bg); color: var(--ink); border: 1px solid transparent; white-space: nowrap; }
.pill.done { background: var(--done-bg); color: var(--done); }
.pill.failed { background: var(--failed-bg); color: var(--failed); }
.pill.notrun { color: var(--notrun); }
.pill.verify { background: #fff8c5; color: #7d4e00; }
.answer { border: 2px solid #0969da; background: #f3f8ff; }
.answer h2 { color: #0969da; }
.answer-text { font-size: 19px; line-height: 1.5; white-space: pre-wrap; overflow-wrap: anywhere; margin: 0; }
.graph { overflow-x: auto; padding: 6px 0; }
.graph svg { display: block; margin: 0 auto; max-width: 100%; height: auto; }
svg.plan text { font-family: inherit; fill: var(--ink); }
svg.plan .id { font-size: 13px; font-weight: 700; }
svg.plan .title { font-size: 13px; }
svg.plan .meta { font-size: 11.5px; fill: var(--muted); }
svg.plan .edge { fill: none; stroke: #8c959f; stroke-width: 1.6; }
svg.plan .node rect { stroke-width: 2; }
svg.plan .node.done rect { fill: var(--done-bg); stroke: var(--done); }
svg.plan .node.failed rect { fill: var(--failed-bg); stroke: var(--failed); }
svg.plan .node.notrun rect { fill: var(--notrun-bg); stroke: var(--notrun); stroke-dasharray: 5 4; }
svg.plan .node rect.inner { fill: none; stroke-width: 1; stroke-dasharray: none; }
svg.plan a:hover rect { stroke-width: 3; }
.legend { display: flex; flex-wrap: wrap; gap: 14px; font-size: 13px; color: var(--muted); margin: 10px 0 0; }
.note { color: var(--muted); font-size: 13.5px; margin: 6px 0 0; }
article.step { border-left: 5px solid var(--notrun); }
article.step.done { border-left-color: var(--done); }
article.step.failed { border-left-color: var(--failed); }
.step-head { display: flex; flex-wrap: wrap; align-items: baseline; gap: 8px; }
.sid { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; color: var(--muted); font-size: 14px; }
.instruction { margin: 4px 0 10px; white-space: pre-wrap; overflow-wrap: anywhere; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; font-size: 13.5px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
pre { margin: 0; padding: 12px 14px; border-radius: 8px; overflow: auto; max-height: 520px;
  font: 12.5px/1.45 ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; white-space: pre; }
pre.code { background: #f6f8fa; border: 1px solid var(--line); }
pre.out { background: #0d1117; color: #e6edf3; }
pre.err { background: #1c0d0f; color: #ffd8d3; }
pre.problem { background: var(--failed-bg); color: #82071e; white-space: pre-wrap; }
.code .k { color: #cf222e; font-weight: 600; }
.code .b { color: #8250df; }
.code .f { color: #6639ba; font-weight: 600; }
.code .s { color: #0a3069; }
.code .c { color: #6e7781; font-style: italic; }
.code .n { color: #0550ae; }
details summary { cursor: pointer; color: var(--muted); font-size: 13.5px; margin: 14px 0 6px; }
figure { margin: 16px 0 0; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; background: #fff; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
ul.files { margin: 6px 0 0; padding-left: 20px; font-size: 13.5px; }
table { border-collapse: collapse; font-size: 14px; }
td, th { text-align: left; padding: 4px 18px 4px 0; border-bottom: 1px solid var(--bg); vertical-align: top; }
th { color: var(--muted); font-weight: 500; }
code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 13px; overflow-wrap: anywhere; }
h2.band { margin: 26px 0 12px 4px; }
footer { color: var(--muted); font-size: 12.5px; text-align: center; }
"#;

/// The self-contained HTML report of a run.
pub fn html(report: &Report) -> String {
    let info = &report.info;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        escape(&format!("planbox: {}", info.goal))
    );
    let _ = write!(
        out,
        "<header>\n<p class=\"kicker\">planbox report · run <code>{}</code></p>\n<h1>{}</h1>\n",
        escape(&info.id),
        escape(&info.goal)
    );
    if let Some(plan) = &report.plan {
        let count = |status| plan.steps.iter().filter(|s| s.status == status).count();
        let _ = writeln!(
            out,
            "<p class=\"summary\"><span class=\"pill done\">{} done</span>\
             <span class=\"pill failed\">{} failed</span><span class=\"pill notrun\">{} not run</span>\
             <span class=\"pill\">plan version {}</span><span class=\"pill\">{} replan(s)</span>\
             <span class=\"pill\">{:.1} s</span></p>",
            count(StepStatus::Done),
            count(StepStatus::Failed),
            count(StepStatus::NotRun),
            plan.version,
            plan.replans,
            report.wall.as_secs_f64()
        );
    }
    out.push_str("</header>\n<br>\n");
    let _ = write!(
        out,
        "<section class=\"answer\">\n<h2>Answer</h2>\n<p class=\"answer-text\">{}</p>\n</section>\n",
        escape(report.answer.trim())
    );
    out.push_str("<section>\n<h2>Inputs</h2>\n<table>\n");
    for input in &info.inputs {
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td>sha256 <code>{}</code></td></tr>",
            escape(&input.name),
            escape(input.sha256.get(..12).unwrap_or(&input.sha256))
        );
    }
    out.push_str("</table>\n</section>\n");
    match &report.plan {
        None => out.push_str("<section>\n<h2>Plan</h2>\n<p>No plan was made.</p>\n</section>\n"),
        Some(plan) => {
            let _ = write!(
                out,
                "<section>\n<h2>Plan (version {}, {} replan(s))</h2>\n<div class=\"graph\">{}</div>\n\
                 <p class=\"legend\"><span class=\"pill done\">done</span><span class=\"pill failed\">failed</span>\
                 <span class=\"pill notrun\">not run</span><span class=\"pill verify\">✓ verify: a check, double border</span>\
                 <span>arrows point from a step to the steps that need it; click a step for its details</span></p>\n",
                plan.version,
                plan.replans,
                graph::svg(&plan.steps)
            );
            if plan.version > 1 {
                let earlier = match plan.version - 1 {
                    1 => "plan-1.json".to_string(),
                    last => format!("plan-1.json to plan-{last}.json"),
                };
                let _ = writeln!(
                    out,
                    "<p class=\"note\">This is the final plan. Earlier versions are in {earlier}; \
                     the attempts of steps they dropped stay under steps/.</p>"
                );
            }
            out.push_str("</section>\n<h2 class=\"band\">Steps</h2>\n");
            for view in &plan.steps {
                step(&mut out, view, &plan.steps);
            }
        }
    }
    usage(&mut out, report);
    let _ = write!(
        out,
        "<footer>Written by planbox from the run folder <code>{}</code>.</footer>\n</main>\n</body>\n</html>\n",
        escape(&info.id)
    );
    out
}

fn step(out: &mut String, view: &StepView, all: &[StepView]) {
    let step = &view.step;
    let status = class(view.status);
    let _ = write!(
        out,
        "<article class=\"step {status}\" id=\"step-{}\">\n<div class=\"step-head\"><h3><span class=\"sid\">{}</span> {}</h3>\
         <span class=\"pill {status}\">{}</span>{}</div>\n<p class=\"instruction\">{}</p>\n",
        escape(&step.id),
        escape(&step.id),
        escape(&step.title),
        view.status.label(),
        match step.kind {
            StepKind::Verify => "<span class=\"pill verify\">✓ verify</span>",
            StepKind::Action => "<span class=\"pill\">action</span>",
        },
        escape(&step.instruction)
    );
    out.push_str("<dl class=\"facts\">\n");
    let list = |items: &[String]| {
        if items.is_empty() {
            "—".to_string()
        } else {
            items
                .iter()
                .map(|i| format!("<code>{}</code>", escape(i)))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let _ = write!(
        out,
        "<dt>after</dt><dd>{}</dd>\n<dt>reads</dt><dd>{}</dd>\n<dt>writes</dt><dd>{}</dd>\n<dt>attempts</dt><dd>{}</dd>\n",
        list(&step.depends_on),
        list(&step.reads),
        list(&step.writes),
        view.attempts
    );
    if let Some(fallback) = &step.fallback {
        let _ = writeln!(out, "<dt>fallback</dt><dd>{}</dd>", escape(fallback));
    }
    let Some(last) = &view.last else {
        let blocking: Vec<String> = step
            .depends_on
            .iter()
            .filter(|d| {
                all.iter()
                    .any(|v| &v.step.id == *d && v.status != StepStatus::Done)
            })
            .map(|d| format!("<code>{}</code>", escape(d)))
            .collect();
        let why = if blocking.is_empty() {
            "Never attempted (the run ended first).".to_string()
        } else {
            format!("Never attempted: {} did not pass.", blocking.join(", "))
        };
        let _ = writeln!(out, "</dl>\n<p class=\"note\">{why}</p>\n</article>");
        return;
    };
    attempt(out, view.status, last);
    out.push_str("</article>\n");
}

fn attempt(out: &mut String, status: StepStatus, last: &AttemptView) {
    let which = match status {
        StepStatus::Done => "passed",
        StepStatus::Failed | StepStatus::NotRun => "last",
    };
    let _ = writeln!(
        out,
        "<dt>shown</dt><dd>attempt {} ({which}), <code>{}</code></dd>",
        last.number,
        escape(&last.dir)
    );
    match &last.result {
        Some(result) => {
            let ended = result
                .status
                .as_ref()
                .map_or("unknown".to_string(), ToString::to_string);
            let _ = write!(
                out,
                "<dt>ended</dt><dd>{}</dd>\n<dt>model</dt><dd>{}</dd>\n<dt>container start</dt><dd>{}</dd>\n\
                 <dt>run</dt><dd>{}</dd>\n<dt>printed</dt><dd>{} stdout, {} stderr</dd>\n</dl>\n",
                escape(&ended),
                millis(result.model_ms),
                if result.start_ms == 0 {
                    "0 ms (warm: it started while the model wrote the script)".to_string()
                } else {
                    millis(result.start_ms)
                },
                millis(result.run_ms),
                bytes(result.stdout_bytes),
                bytes(result.stderr_bytes)
            );
            if let Some(problem) = result.problem.as_deref().filter(|_| !result.ok) {
                let _ = write!(
                    out,
                    "<h4>Problem</h4>\n<pre class=\"problem\">{}</pre>\n",
                    escape(problem.trim_end())
                );
            }
        }
        None => out.push_str(
            "<dt>ended</dt><dd>the script did not run (no code in the reply, or it did not compile)</dd>\n</dl>\n",
        ),
    }
    match &last.script {
        Some(script) => {
            let _ = write!(
                out,
                "<h4>Script</h4>\n<pre class=\"code\"><code>{}</code></pre>\n",
                highlight::python(script.trim_end())
            );
        }
        None => out.push_str("<p class=\"note\">No script was extracted from the reply.</p>\n"),
    }
    for (name, text, css, open) in [
        ("stdout", &last.stdout, "out", true),
        ("stderr", &last.stderr, "err", status != StepStatus::Done),
    ] {
        let clean = crate::text::strip_escapes(text.trim_end());
        if clean.trim().is_empty() {
            continue;
        }
        let (shown, left_out) = tail(&clean, TAIL_CHARS);
        let note = if left_out > 0 {
            format!(
                " (last part; {} before it not shown)",
                bytes(left_out as u64)
            )
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<details{}><summary>{name}{note}</summary>\n<pre class=\"{css}\">{}</pre>\n</details>\n",
            if open { " open" } else { "" },
            escape(shown)
        );
    }
    for file in last.files.iter().filter(|f| f.image.is_some()) {
        figure(out, file);
    }
    let others: Vec<&FileView> = last.files.iter().filter(|f| f.image.is_none()).collect();
    if !others.is_empty() {
        out.push_str("<h4>Files</h4>\n<ul class=\"files\">\n");
        for file in others {
            let _ = writeln!(
                out,
                "<li><code>{}</code> ({})</li>",
                escape(&file.name),
                bytes(file.size)
            );
        }
        out.push_str("</ul>\n");
    }
}

fn figure(out: &mut String, file: &FileView) {
    let name = escape(&file.name);
    match &file.image {
        Some(Image::Embedded { mime, bytes: data }) if !data.is_empty() => {
            // An SVG chart goes in through <img>, where its own scripts cannot run.
            let _ = writeln!(
                out,
                "<figure><img alt=\"{name}\" src=\"data:{mime};base64,{}\"><figcaption><code>{name}</code> ({})</figcaption></figure>",
                base64(data),
                bytes(file.size)
            );
        }
        Some(Image::Embedded { .. }) => {
            let _ = writeln!(
                out,
                "<p class=\"note\">Chart <code>{name}</code> could not be read.</p>"
            );
        }
        Some(Image::TooLarge) => {
            let _ = writeln!(
                out,
                "<p class=\"note\">Chart <code>{name}</code> ({}) is larger than {} and is not embedded; it is in the run folder.</p>",
                bytes(file.size),
                bytes(super::MAX_IMAGE)
            );
        }
        None => {}
    }
}

fn usage(out: &mut String, report: &Report) {
    let totals = &report.totals;
    let cost = match totals.cost {
        Some(cost) => format!("{cost:.4} (estimate, in the currency of the price table)"),
        None => "not priced (planbox.toml has no price for this model)".to_string(),
    };
    let _ = write!(
        out,
        "<section>\n<h2>Usage</h2>\n<table>\n\
         <tr><th>model calls</th><td>{}</td></tr>\n\
         <tr><th>prompt tokens</th><td>{}</td></tr>\n\
         <tr><th>completion tokens</th><td>{}</td></tr>\n\
         <tr><th>cost</th><td>{}</td></tr>\n\
         <tr><th>wall time</th><td>{:.1} s</td></tr>\n\
         <tr><th>sandbox image</th><td><code>{}</code></td></tr>\n</table>\n</section>\n",
        totals.calls,
        totals.prompt_tokens,
        totals.completion_tokens,
        escape(&cost),
        report.wall.as_secs_f64(),
        escape(&report.info.image)
    );
}

#[cfg(test)]
mod tests {
    use super::super::{AttemptResult, PlanView};
    use super::*;
    use crate::llm::Totals;
    use crate::plan::Step;
    use crate::run::{Input, RunInfo};
    use std::time::Duration;

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
        let tags = regex::Regex::new(r"<([a-zA-Z][a-zA-Z0-9]*)").unwrap();
        let names: std::collections::BTreeSet<&str> = tags
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
        let whole_tags = regex::Regex::new(r"<[a-zA-Z][^>]*>").unwrap();
        let quoted = regex::Regex::new(r#""[^"]*""#).unwrap();
        for tag in whole_tags.find_iter(&page) {
            let bare = quoted.replace_all(tag.as_str(), "\"\"");
            assert!(!bare.contains("onerror"), "{}", tag.as_str());
        }
        assert_eq!(page.matches("<img ").count(), 1, "only the chart");
        assert!(page.contains("<h2>Plan (version 2, 1 replan(s))</h2>"));
        assert!(page.contains("Earlier versions are in plan-1.json;"));
    }

    #[test]
    fn escape_covers_content_and_attributes() {
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&#39;");
    }

    #[test]
    fn base64_matches_the_standard_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn long_output_keeps_its_tail_from_a_line_start() {
        let text = format!("{}\nlast line\n", "x".repeat(100));
        let (shown, left_out) = tail(&text, 15);
        assert_eq!(shown, "last line\n");
        assert_eq!(left_out, 101);
        assert_eq!(tail("short", 15), ("short", 0));
    }
}
