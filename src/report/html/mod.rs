//! The HTML report: one self-contained page (inline CSS and SVG, charts as `data:` URIs, no
//! script, nothing fetched). Every piece of text from the run is escaped: a script, a title or
//! an output line can only ever show up as text.

mod format;
#[cfg(test)]
mod tests;

use std::fmt::Write;

use super::markup::{class, escape};
use super::{AttemptView, FileView, Image, Report, StepStatus, StepView, graph, highlight};
use crate::plan::StepKind;
use format::{base64, bytes, millis, tail};

/// Characters of stdout and stderr shown per step (the tail: errors come last).
const TAIL_CHARS: usize = 6000;

/// The page's style sheet, inlined in `<style>`.
const STYLE: &str = include_str!("style.css");

/// The self-contained HTML report of a run.
pub fn html(report: &Report) -> String {
    let info = &report.info;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<main>\n",
        escape(&format!("planbox: {}", info.goal))
    );
    let _ = write!(
        out,
        "<header>\n<p class=\"kicker\">planbox report · run <code>{}</code></p>\n<h1>{}</h1>\n",
        escape(&info.id),
        escape(&info.goal)
    );
    for (n, question) in info.followups.iter().enumerate() {
        let _ = writeln!(
            out,
            "<p class=\"followup\">Follow-up {}: {}</p>",
            n + 1,
            escape(question)
        );
    }
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
                if result.hidden_ms > 0 {
                    format!(
                        "{} ({} of it while the model wrote the script)",
                        millis(result.start_ms),
                        millis(result.hidden_ms)
                    )
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
