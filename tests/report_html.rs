//! The HTML report of a real run (rule-based fake model, real sandbox, a matplotlib chart),
//! opened in headless Chromium: it renders, shows something, logs no console error, and
//! fetches nothing.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use planbox::agent::{Agent, Options};
use planbox::event::Collect;
use planbox::llm::{Llm, Meter, Reply, Request};
use planbox::run::RunFolder;
use planbox::sandbox;
use regex::Regex;
use serde_json::json;

/// A model that plans a fixed graph and writes each step's script from its instruction.
struct Rules;

/// Titles a page would run as markup if the report did not escape them.
const HOSTILE_TITLE: &str = "<script>console.error('title ran')</script> sum north";
const HOSTILE_OUTPUT: &str = "<img src=x onerror=\"console.error('stdout ran')\">";

fn step(
    id: &str,
    title: &str,
    kind: &str,
    deps: &[&str],
    reads: &[&str],
    writes: &[&str],
) -> serde_json::Value {
    json!({"id": id, "title": title, "instruction": format!("task {id}: {title}"), "kind": kind,
           "depends_on": deps, "reads": reads, "writes": writes})
}

fn plan() -> String {
    json!({"steps": [
        step("north", HOSTILE_TITLE, "action", &[], &["sales.csv"], &["north.txt"]),
        step("chart", "chart the amount per region", "action", &[], &["sales.csv"], &["chart.png"]),
        step("total", "print the total", "action", &["north"], &["north.txt", "sales.csv"], &[]),
        step("check", "check the total is positive", "verify", &["total", "chart"], &[], &[]),
        step("broken", "a step that always fails", "action", &[], &[], &[]),
        step("after", "needs the broken step", "action", &["broken"], &[], &[]),
    ]})
    .to_string()
}

fn script(prompt: &str) -> &'static str {
    let task = |id: &str| prompt.contains(&format!("task {id}:"));
    if task("north") {
        "import pandas as pd\nd = pd.read_csv('/data/sales.csv')\nv = d[d.region == 'north'].amount.sum()\nopen('north.txt', 'w').write(str(v))\nprint('north', v)"
    } else if task("chart") {
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\nimport pandas as pd\n\nd = pd.read_csv('/data/sales.csv')\nfig, ax = plt.subplots(figsize=(6, 3.5))\nax.bar(d.region, d.amount, color=['#4c72b0', '#dd8452'])\nax.set_title('Amount per region')\nfig.tight_layout()\nfig.savefig('chart.png', dpi=100)\nprint(\"<img src=x onerror=\\\"console.error('stdout ran')\\\">\")"
    } else if task("total") {
        "import pandas as pd\n# The whole file: both regions.\ntotal = int(pd.read_csv('/data/sales.csv').amount.sum())\nprint(f'@total[{total}]')"
    } else if task("check") {
        "import sys\nprint('total is positive')\nsys.exit(0)"
    } else {
        "import sys\nprint('about to fail', file=sys.stderr)\nsys.exit('deliberately broken')"
    }
}

impl Llm for Rules {
    async fn complete(&self, request: &Request) -> planbox::Result<Reply> {
        let prompt = &request.messages.last().unwrap().content;
        let text = if prompt.contains("Reply with {\"steps\"") {
            plan()
        } else {
            format!("```python\n{}\n```", script(prompt))
        };
        Ok(common::reply(request, text))
    }
}

const INSTALL: &str = "headless Chromium is needed for the HTML report tests: install it (Debian: apt-get install -y chromium)";

fn chromium() -> PathBuf {
    common::chromium(INSTALL)
}

/// What headless Chromium made of a page: its screenshot and what it logged.
struct Rendered {
    png: Vec<u8>,
    stderr: String,
}

async fn render(page: &Path) -> Rendered {
    let scratch = tempfile::tempdir().unwrap();
    let shot = scratch.path().join("shot.png");
    let mut command = tokio::process::Command::new(chromium());
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,2400",
            "--hide-scrollbars",
            "--no-first-run",
        ])
        .arg(format!(
            "--user-data-dir={}",
            scratch.path().join("profile").display()
        ))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("chromium took over two minutes")
        .unwrap_or_else(|err| panic!("{INSTALL} ({err})"));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "chromium failed:\n{stderr}");
    let png = std::fs::read(&shot).unwrap_or_else(|_| panic!("no screenshot:\n{stderr}"));
    if let Some(keep) = std::env::var_os("PLANBOX_KEEP_SCREENSHOT") {
        std::fs::write(keep, &png).unwrap();
    }
    Rendered { png, stderr }
}

/// Console lines in Chromium's log. It logs every console message (errors included) at INFO
/// level as `...:CONSOLE...] "message", source: ...`, so any such line counts: the report has
/// no script of its own, and a console message means markup from the run came alive.
fn console_errors(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .collect()
}

/// Distinct RGBA pixel values in a PNG, up to `enough`.
fn colours(png: &[u8], enough: usize) -> usize {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png));
    decoder.set_transformations(
        png::Transformations::normalize_to_color8() | png::Transformations::ALPHA,
    );
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    let channels = frame.color_type.samples();
    let mut seen = std::collections::HashSet::new();
    for pixel in pixels[..frame.buffer_size()].chunks(channels) {
        seen.insert(pixel.to_vec());
        if seen.len() >= enough {
            break;
        }
    }
    seen.len()
}

/// A whole opening tag.
static TAG: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"<[a-zA-Z][^>]*>").unwrap());
/// A `src` or `href` attribute, its value double-quoted, single-quoted or bare.
static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)\s(?:src|href)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))"#).unwrap()
});

/// `src` and `href` values of the page's own elements (text from the run is escaped, so it
/// holds no `<`, and every tag here is the report's).
fn references(html: &str) -> Vec<String> {
    TAG.find_iter(html)
        .flat_map(|t| {
            REFERENCE
                .captures_iter(t.as_str())
                .map(|c| {
                    c.iter()
                        .skip(1)
                        .flatten()
                        .next()
                        .unwrap()
                        .as_str()
                        .to_string()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn the_html_report_renders_in_a_browser_with_the_chart_and_no_console_error() {
    let world = common::World::new("report-html").await;
    let runs = world.dir.path().join("out").join("runs");
    let (folder, _) = RunFolder::create(
        &runs,
        "What is the total amount? Chart it. Answer as @total[value].",
        &[world.input()],
        &sandbox::image::tag(),
        json!({}),
    )
    .unwrap();
    let options = Options {
        parallel: 2,
        max_repairs: 0,
        max_replans: 0,
        // The report shows each planned step: they stay as planned.
        fuse_chains: false,
        always_plan: true,
        ..Options::default()
    };
    let agent = Agent::new(
        &Rules,
        &world.sandbox,
        options,
        Arc::new(Meter::new(None, None)),
    );
    let finished = agent.run(&folder, &Collect::default()).await.unwrap();
    assert_eq!(finished.answer, "@total[42]");
    assert!(!finished.achieved, "the broken step fails the goal");
    assert!(
        folder
            .dir()
            .join("steps/chart/attempt-1/files/chart.png")
            .is_file()
    );

    let path = folder.dir().join("report.html");
    let html = std::fs::read_to_string(&path).unwrap();
    assert!(
        html.contains("data:image/png;base64,iVBORw0KGgo"),
        "the chart is embedded"
    );
    for id in ["north", "chart", "total", "check", "broken", "after"] {
        assert!(
            html.contains(&format!("id=\"step-{id}\"")),
            "no section for {id}"
        );
    }
    assert_eq!(html.matches("<g class=\"node done").count(), 4);
    assert_eq!(html.matches("<g class=\"node failed").count(), 1);
    assert_eq!(html.matches("<g class=\"node notrun").count(), 1);
    assert_eq!(html.matches("class=\"edge\"").count(), 4);
    assert!(
        html.contains("class=\"node done verify\""),
        "the check is marked"
    );
    assert!(
        html.contains("Never attempted: <code>broken</code> did not pass."),
        "why a step did not run"
    );
    assert!(
        html.contains("deliberately broken"),
        "the failure's output is shown"
    );
    assert!(html.contains("&lt;script&gt;console.error(&#39;title ran&#39;)&lt;/script&gt;"));
    assert!(!html.contains(HOSTILE_TITLE) && !html.contains(HOSTILE_OUTPUT));
    let remote: Vec<String> = references(&html)
        .into_iter()
        .filter(|r| !r.starts_with('#') && !r.starts_with("data:"))
        .collect();
    assert_eq!(
        remote,
        Vec::<String>::new(),
        "the page refers to something outside itself"
    );

    let rendered = render(&path).await;
    assert_eq!(console_errors(&rendered.stderr), Vec::<&str>::new());
    assert!(rendered.png.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(
        colours(&rendered.png, 50) >= 50,
        "the screenshot is (nearly) blank"
    );
    world.assert_clean().await;
}

#[tokio::test]
async fn console_errors_are_detected_on_a_page_with_a_broken_script() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.html");
    std::fs::write(
        &broken,
        "<!DOCTYPE html><html><body><h1>broken</h1><script>no_such_function();</script></body></html>",
    )
    .unwrap();
    let rendered = render(&broken).await;
    let errors = console_errors(&rendered.stderr);
    assert!(
        errors.len() == 1 && errors[0].contains("Uncaught ReferenceError: no_such_function"),
        "{errors:?}\n{}",
        rendered.stderr
    );
    let clean = dir.path().join("clean.html");
    std::fs::write(
        &clean,
        "<!DOCTYPE html><html><body><h1>fine</h1></body></html>",
    )
    .unwrap();
    assert_eq!(
        console_errors(&render(&clean).await.stderr),
        Vec::<&str>::new()
    );
}

#[test]
fn references_finds_only_attributes_of_real_tags() {
    let page = "<a href=\"#x\">&lt;img src=http://e.x&gt;</a><img alt='a' src='data:image/png;base64,AA'><link href=https://e.x/s.css>";
    assert_eq!(
        references(page),
        vec!["#x", "data:image/png;base64,AA", "https://e.x/s.css"]
    );
}

#[test]
fn a_single_colour_screenshot_counts_as_blank() {
    let mut png = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png, 4, 4);
        encoder.set_color(png::ColorType::Rgb);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(&[255; 48]).unwrap();
    }
    assert_eq!(colours(&png, 50), 1);
}
