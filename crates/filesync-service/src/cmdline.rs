//! Reading a Windows service's command line back: the Service Control Manager stores one
//! string (`"C:\…\filesync.exe" --home "C:\ProgramData\FileSync" service run`), and the
//! command line finds the service's home in it. Pure, so it is tested on every platform.

use std::path::PathBuf;

/// Splits a command line the way the Microsoft C runtime (and `CommandLineToArgvW`) does:
/// the program name ends at the first unquoted space, quotes there are not escapes; in the
/// arguments, `2n` backslashes before `"` give `n` backslashes and toggle quoting, `2n+1`
/// give `n` and a literal `"`, other backslashes are literal, and `""` inside quotes is `"`.
pub fn split(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut chars = line.chars().peekable();

    // The program name.
    let mut program = String::new();
    let mut quoted = false;
    while let Some(&c) = chars.peek() {
        if c == '"' {
            quoted = !quoted;
        } else if !quoted && (c == ' ' || c == '\t') {
            break;
        } else {
            program.push(c);
        }
        chars.next();
    }
    if !program.is_empty() || line.starts_with('"') {
        args.push(program);
    }

    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        if chars.peek().is_none() {
            return args;
        }
        let mut arg = String::new();
        let mut quoted = false;
        while let Some(&c) = chars.peek() {
            match c {
                '\\' => {
                    let mut n = 0;
                    while chars.next_if_eq(&'\\').is_some() {
                        n += 1;
                    }
                    if chars.peek() == Some(&'"') {
                        arg.extend(std::iter::repeat_n('\\', n / 2));
                        if n % 2 == 1 {
                            arg.push('"');
                            chars.next();
                        }
                    } else {
                        arg.extend(std::iter::repeat_n('\\', n));
                    }
                }
                '"' => {
                    chars.next();
                    if quoted && chars.peek() == Some(&'"') {
                        arg.push('"');
                        chars.next();
                    } else {
                        quoted = !quoted;
                    }
                }
                ' ' | '\t' if !quoted => break,
                _ => {
                    arg.push(c);
                    chars.next();
                }
            }
        }
        args.push(arg);
    }
}

/// The value of the first `--home DIR` (or `--home=DIR`) among `args`, skipping the program.
pub fn home_argument(args: &[String]) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        if a == "--home" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--home=") {
            return Some(PathBuf::from(v));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_service_command_line() {
        let line = r#""C:\Program Files\FileSync\filesync.exe" --home "C:\ProgramData\FileSync" service run"#;
        let args = split(line);
        assert_eq!(
            args,
            [r"C:\Program Files\FileSync\filesync.exe", "--home", r"C:\ProgramData\FileSync", "service", "run"]
        );
        assert_eq!(home_argument(&args), Some(PathBuf::from(r"C:\ProgramData\FileSync")));
    }

    #[test]
    fn backslashes_and_quotes_follow_the_c_runtime_rules() {
        // Examples from Microsoft's "Parsing C command-line arguments".
        assert_eq!(split(r#"p "abc" d e"#), ["p", "abc", "d", "e"]);
        assert_eq!(split(r#"p a\\\b d"e f"g h"#), ["p", r"a\\\b", "de fg", "h"]);
        assert_eq!(split(r#"p a\\\"b c d"#), ["p", r#"a\"b"#, "c", "d"]);
        assert_eq!(split(r#"p a\\\\"b c" d e"#), ["p", r"a\\b c", "d", "e"]);
        assert_eq!(split(r#"p a"b"" c d"#), ["p", r#"ab" c d"#]);
        // A quoted directory ending in a backslash, as windows-service escapes it.
        assert_eq!(split(r#"p --home "C:\a b\\" x"#), ["p", "--home", r"C:\a b\", "x"]);
    }

    #[test]
    fn home_argument_forms() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(home_argument(&v(&["f", "--home=D:\\h", "agent"])), Some(PathBuf::from("D:\\h")));
        assert_eq!(home_argument(&v(&["f", "service", "run"])), None);
        assert_eq!(home_argument(&v(&["--home", "service"])), None, "the program name is not an argument");
        assert_eq!(home_argument(&v(&["f", "--home"])), None);
    }
}
