//! Python syntax highlighting for the HTML report: a small tokenizer that wraps keywords,
//! built-ins, definition names, strings, comments and numbers in classed `<span>`s. Every
//! piece of the script comes out HTML-escaped, whatever it holds.

use super::markup::escape;

const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

const BUILTINS: &[&str] = &[
    "abs",
    "all",
    "any",
    "bool",
    "dict",
    "enumerate",
    "Exception",
    "filter",
    "float",
    "format",
    "getattr",
    "hasattr",
    "int",
    "isinstance",
    "iter",
    "len",
    "list",
    "map",
    "max",
    "min",
    "next",
    "object",
    "open",
    "print",
    "range",
    "repr",
    "reversed",
    "round",
    "self",
    "set",
    "sorted",
    "str",
    "sum",
    "super",
    "tuple",
    "type",
    "ValueError",
    "KeyError",
    "zip",
];

/// Letters that may prefix a string literal (`r"..."`, `f'...'`, `rb"..."`).
fn is_string_prefix(word: &str) -> bool {
    word.len() <= 2
        && word
            .chars()
            .all(|c| matches!(c.to_ascii_lowercase(), 'r' | 'b' | 'u' | 'f'))
}

/// `code` as HTML with classed spans: `k` keyword, `b` built-in, `f` defined name, `s` string,
/// `c` comment, `n` number. Unterminated strings run to the end of their line (or of the
/// code, for triple quotes) rather than failing.
pub(crate) fn python(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    let mut out = String::with_capacity(code.len() * 2);
    let mut i = 0;
    let mut after_def = false;
    let span = |out: &mut String, class: &str, text: &[char]| {
        let text: String = text.iter().collect();
        out.push_str(&format!("<span class=\"{class}\">{}</span>", escape(&text)));
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '#' {
            let end = (i..chars.len())
                .find(|&j| chars[j] == '\n')
                .unwrap_or(chars.len());
            span(&mut out, "c", &chars[i..end]);
            i = end;
        } else if c == '"' || c == '\'' {
            let end = string_end(&chars, i);
            span(&mut out, "s", &chars[i..end]);
            i = end;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let mut end = i + 1;
            while end < chars.len() {
                let d = chars[end];
                let exponent_sign = matches!(d, '+' | '-')
                    && matches!(chars[end - 1], 'e' | 'E')
                    && !chars[i..end].iter().any(|x| matches!(x, 'x' | 'X'));
                if d.is_ascii_alphanumeric() || d == '_' || d == '.' || exponent_sign {
                    end += 1;
                } else {
                    break;
                }
            }
            span(&mut out, "n", &chars[i..end]);
            i = end;
        } else if c.is_alphabetic() || c == '_' {
            let mut end = i + 1;
            while end < chars.len() && (chars[end].is_alphanumeric() || chars[end] == '_') {
                end += 1;
            }
            let word: String = chars[i..end].iter().collect();
            if is_string_prefix(&word) && matches!(chars.get(end), Some('"' | '\'')) {
                let close = string_end(&chars, end);
                span(&mut out, "s", &chars[i..close]);
                i = close;
                continue;
            }
            if after_def {
                span(&mut out, "f", &chars[i..end]);
            } else if KEYWORDS.contains(&word.as_str()) {
                span(&mut out, "k", &chars[i..end]);
            } else if BUILTINS.contains(&word.as_str()) {
                span(&mut out, "b", &chars[i..end]);
            } else {
                out.push_str(&escape(&word));
            }
            after_def = word == "def" || word == "class";
            i = end;
            continue;
        } else {
            out.push_str(&escape(&c.to_string()));
            i += 1;
        }
        if !c.is_whitespace() {
            after_def = false;
        }
    }
    out
}

/// Index just past the string literal whose opening quote is at `start`.
fn string_end(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let triple = chars.get(start + 1) == Some(&quote) && chars.get(start + 2) == Some(&quote);
    let mut i = start + if triple { 3 } else { 1 };
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '\n' if !triple => return i,
            q if q == quote
                && (!triple
                    || (chars.get(i + 1) == Some(&quote) && chars.get(i + 2) == Some(&quote))) =>
            {
                return i + if triple { 3 } else { 1 };
            }
            _ => i += 1,
        }
    }
    chars.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn keywords_strings_comments_and_numbers_get_their_classes() {
        let code = "import pandas as pd\ndef total(x):\n    # sum it <all>\n    return sum(x) + 1.5e-3 if x else f'n<{x}>'\n";
        assert_eq!(
            python(code),
            "<span class=\"k\">import</span> pandas <span class=\"k\">as</span> pd\n\
             <span class=\"k\">def</span> <span class=\"f\">total</span>(x):\n    \
             <span class=\"c\"># sum it &lt;all&gt;</span>\n    \
             <span class=\"k\">return</span> <span class=\"b\">sum</span>(x) + \
             <span class=\"n\">1.5e-3</span> <span class=\"k\">if</span> x \
             <span class=\"k\">else</span> <span class=\"s\">f&#39;n&lt;{x}&gt;&#39;</span>\n"
        );
    }

    #[test]
    fn triple_quoted_and_unterminated_strings_stay_strings() {
        assert_eq!(
            python("s = \"\"\"a\n'b' # no\"\"\"\nt = 'open\nx"),
            "s = <span class=\"s\">&quot;&quot;&quot;a\n&#39;b&#39; # no&quot;&quot;&quot;</span>\n\
             t = <span class=\"s\">&#39;open</span>\nx"
        );
        assert_eq!(
            python("print('it\\'s')  # 0x1F"),
            "<span class=\"b\">print</span>(<span class=\"s\">&#39;it\\&#39;s&#39;</span>)  \
             <span class=\"c\"># 0x1F</span>"
        );
    }

    #[test]
    fn a_hostile_script_comes_out_as_text() {
        let html = python("x = '</pre><script>alert(1)</script>'\n# <img src=x onerror=alert(1)>");
        assert!(
            !html.contains("<script") && !html.contains("<img"),
            "{html}"
        );
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
    }
}
