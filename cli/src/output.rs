//! Terminal output: colours on a TTY (or with CLICOLOR_FORCE, for a script
//! that pipes the monitor through `tee`), never with NO_COLOR.

use std::io::IsTerminal;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    /// Colours when stdout is a terminal or CLICOLOR_FORCE is set (not `0`),
    /// and NO_COLOR is unset or empty.
    pub fn detect() -> Self {
        let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0");
        Self {
            color: !set("NO_COLOR") && (set("CLICOLOR_FORCE") || std::io::stdout().is_terminal()),
        }
    }

    pub const fn plain() -> Self {
        Self { color: false }
    }

    pub fn paint(&self, code: Color, text: &str) -> String {
        if self.color {
            format!("\x1b[{}m{text}\x1b[0m", code.ansi())
        } else {
            text.to_owned()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Color {
    Green,
    Red,
    Yellow,
    Blue,
    Cyan,
    Dim,
    Bold,
}

impl Color {
    const fn ansi(self) -> &'static str {
        match self {
            Self::Green => "32",
            Self::Red => "31",
            Self::Yellow => "33",
            Self::Blue => "34",
            Self::Cyan => "36",
            Self::Dim => "2",
            Self::Bold => "1",
        }
    }
}

pub const RULE: &str = "━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_output_has_no_escape_codes() {
        assert_eq!(Style::plain().paint(Color::Red, "x"), "x");
        assert_eq!(
            Style { color: true }.paint(Color::Red, "x"),
            "\x1b[31mx\x1b[0m"
        );
    }
}
