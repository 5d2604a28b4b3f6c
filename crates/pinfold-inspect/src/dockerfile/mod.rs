//! A Dockerfile parser that keeps what a linter needs: every instruction with its 1-based line
//! range and original text, flags (`--mount=`, `--from=`, `--checksum=`, `--platform=`), exec
//! versus shell form, heredocs, parser directives, global `ARG`s and build stages.
//!
//! It follows BuildKit's Dockerfile frontend: parser directives (`# escape=`, `# syntax=`) only
//! before the first comment, blank line or instruction; line continuations with the escape
//! character (`\` or `` ` ``), trailing blanks allowed after it; comment and blank lines inside a
//! continuation are dropped; heredocs (`<<EOF`, `<<-EOF`, quoted delimiters, several on a line)
//! for `RUN`, `COPY` and `ADD`.
//!
//! One deliberate difference: BuildKit silently treats a `RUN`/`CMD`/`ENTRYPOINT` argument that
//! starts like a JSON array (`["`) but does not parse as one as shell form; here that is a syntax
//! error, because it is almost always a typo that turns an exec form into `/bin/sh -c '["...'`.
//! Arguments such as `[ -f x ] && ...` do not start with `["` and stay shell form.

mod parser;
mod subst;

use std::ops::Range;

pub use parser::parse;
pub use subst::substitute;

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dockerfile {
    /// Parser directives from the top of the file, in order.
    pub directives: Vec<Directive>,
    /// The escape character in effect (`\` unless `# escape=` says otherwise).
    pub escape: char,
    /// Every instruction, in file order.
    pub instructions: Vec<Instruction>,
    /// The build stages, one per `FROM`, in file order.
    pub stages: Vec<Stage>,
    /// Comment lines between instructions (not those inside continuations or heredocs).
    pub comments: Vec<Comment>,
}

/// A `# ...` comment line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    /// 1-based line.
    pub line: usize,
    /// The text after `#`, trimmed.
    pub text: String,
}

/// A parser directive such as `# escape=\``.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// The directive name, lower case (`escape`, `syntax`, `check`).
    pub name: String,
    /// Its value, trimmed.
    pub value: String,
    /// 1-based line.
    pub line: usize,
}

/// Where an instruction sits in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// 1-based first line (the keyword's line).
    pub start_line: usize,
    /// 1-based last line, including continuation lines and heredoc bodies.
    pub end_line: usize,
    /// 1-based column of the keyword.
    pub column: usize,
}

/// The instructions Dockerfiles know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // the variants are the Dockerfile keywords themselves
pub enum Keyword {
    From,
    Run,
    Cmd,
    Label,
    Maintainer,
    Expose,
    Env,
    Add,
    Copy,
    Entrypoint,
    Volume,
    User,
    Workdir,
    Arg,
    Onbuild,
    Stopsignal,
    Healthcheck,
    Shell,
}

impl Keyword {
    /// Parses a keyword case-insensitively, as Docker does.
    pub fn parse(word: &str) -> Option<Keyword> {
        Some(match word.to_ascii_uppercase().as_str() {
            "FROM" => Keyword::From,
            "RUN" => Keyword::Run,
            "CMD" => Keyword::Cmd,
            "LABEL" => Keyword::Label,
            "MAINTAINER" => Keyword::Maintainer,
            "EXPOSE" => Keyword::Expose,
            "ENV" => Keyword::Env,
            "ADD" => Keyword::Add,
            "COPY" => Keyword::Copy,
            "ENTRYPOINT" => Keyword::Entrypoint,
            "VOLUME" => Keyword::Volume,
            "USER" => Keyword::User,
            "WORKDIR" => Keyword::Workdir,
            "ARG" => Keyword::Arg,
            "ONBUILD" => Keyword::Onbuild,
            "STOPSIGNAL" => Keyword::Stopsignal,
            "HEALTHCHECK" => Keyword::Healthcheck,
            "SHELL" => Keyword::Shell,
            _ => return None,
        })
    }

    /// The keyword in upper case, as written in documentation.
    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::From => "FROM",
            Keyword::Run => "RUN",
            Keyword::Cmd => "CMD",
            Keyword::Label => "LABEL",
            Keyword::Maintainer => "MAINTAINER",
            Keyword::Expose => "EXPOSE",
            Keyword::Env => "ENV",
            Keyword::Add => "ADD",
            Keyword::Copy => "COPY",
            Keyword::Entrypoint => "ENTRYPOINT",
            Keyword::Volume => "VOLUME",
            Keyword::User => "USER",
            Keyword::Workdir => "WORKDIR",
            Keyword::Arg => "ARG",
            Keyword::Onbuild => "ONBUILD",
            Keyword::Stopsignal => "STOPSIGNAL",
            Keyword::Healthcheck => "HEALTHCHECK",
            Keyword::Shell => "SHELL",
        }
    }
}

/// A `--name=value` (or bare `--name`) flag before an instruction's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// The name without the leading `--` (`mount`, `from`, `checksum`, `chmod`, `platform`).
    pub name: String,
    /// The value after `=`, if any.
    pub value: Option<String>,
}

/// How `RUN`, `CMD` and `ENTRYPOINT` give their command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Exec form, a JSON array: run without a shell.
    Exec(Vec<String>),
    /// Shell form: the text (continuations joined) is passed to the stage's `SHELL`.
    Shell(String),
}

/// One `name[=default]` of an `ARG` instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgDecl {
    /// The variable name.
    pub name: String,
    /// The default value, quotes removed, if one is given.
    pub default: Option<String>,
}

/// What an instruction says, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// `FROM image [AS name]`; `image` is as written (variables not substituted).
    From {
        /// The image as written.
        image: String,
        /// The stage name after `AS`.
        alias: Option<String>,
    },
    /// `ARG name[=default] ...`.
    Arg(Vec<ArgDecl>),
    /// `ENV key=value ...` (or the legacy `ENV key value`), quotes removed.
    Env(Vec<(String, String)>),
    /// `RUN`, `CMD` or `ENTRYPOINT`.
    Command(Command),
    /// `SHELL ["executable", "parameters"]`.
    Shell(Vec<String>),
    /// `ADD` or `COPY`: sources (heredoc markers included as written) and destination.
    Files {
        /// Sources as written, quotes removed.
        sources: Vec<String>,
        /// The destination.
        dest: String,
    },
    /// Any other instruction: its arguments after the flags, continuations joined.
    Raw(String),
}

/// A heredoc attached to an instruction (`<<EOF ... EOF`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, without quotes.
    pub delimiter: String,
    /// `<<-`: leading tabs are stripped from the body and the closing line.
    pub strip_tabs: bool,
    /// The delimiter was quoted, so the body is not expanded.
    pub quoted: bool,
    /// The body, lines joined with `\n` (tabs stripped for `<<-`), without the delimiter line.
    pub body: String,
    /// 1-based line of the body's first line.
    pub body_start_line: usize,
}

/// One parsed instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// The keyword.
    pub keyword: Keyword,
    /// Lines and column.
    pub span: Span,
    /// The original text of all its lines, heredoc bodies included, joined with `\n`.
    pub original: String,
    /// Leading `--flags`.
    pub flags: Vec<Flag>,
    /// The arguments.
    pub body: Body,
    /// Heredocs, in the order their markers appear.
    pub heredocs: Vec<Heredoc>,
    /// The stage the instruction belongs to (`None` for `ARG`s before the first `FROM`).
    pub stage: Option<usize>,
}

impl Instruction {
    /// The value of flag `--name`, if present (the last one wins, as in BuildKit).
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|f| f.name == name)
            .map(|f| f.value.as_deref().unwrap_or(""))
    }

    /// Whether flag `--name` is present.
    pub fn has_flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f.name == name)
    }
}

/// What a stage is built on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseImage {
    /// `scratch`: the empty image.
    Scratch,
    /// An earlier stage, by index (`FROM builder`).
    Stage(usize),
    /// An image reference.
    Image {
        /// The reference after substituting global `ARG` defaults.
        reference: String,
        /// Variables used but without a value (the reference is then incomplete).
        unresolved: Vec<String>,
    },
}

/// A build stage: a `FROM` and the instructions up to the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// 0-based index among stages.
    pub index: usize,
    /// The name given with `AS`, lower-cased as BuildKit does.
    pub name: Option<String>,
    /// What the stage starts from.
    pub base: BaseImage,
    /// Index of its `FROM` in [`Dockerfile::instructions`].
    pub from: usize,
    /// Indices of all its instructions, `FROM` included.
    pub instructions: Range<usize>,
}

/// Why a Dockerfile could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {kind}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

/// The kinds of syntax error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// The first word is not a Dockerfile instruction.
    #[error("unknown instruction {0:?}")]
    UnknownInstruction(String),
    /// A heredoc's closing delimiter never came.
    #[error("unterminated heredoc: no line {0:?} before the end of the file")]
    UnterminatedHeredoc(String),
    /// An argument that starts like a JSON array is not a JSON array of strings.
    #[error("{keyword} exec form is not a JSON array of strings: {reason}")]
    BadExecForm {
        /// The instruction.
        keyword: &'static str,
        /// What the JSON parser said.
        reason: String,
    },
    /// Only `ARG` may come before the first `FROM`.
    #[error("{0} before the first FROM (only ARG may come before FROM)")]
    InstructionBeforeFrom(&'static str),
    /// No `FROM` at all.
    #[error("no FROM instruction")]
    NoFrom,
    /// `# escape=` names something other than `\` or a backtick.
    #[error("invalid escape character {0:?} (must be \\ or `)")]
    InvalidEscape(String),
    /// The instruction lacks required arguments or has too many.
    #[error("{keyword} {problem}")]
    BadArguments {
        /// The instruction.
        keyword: &'static str,
        /// What is wrong with its arguments.
        problem: &'static str,
    },
    /// A quote opened in the arguments is never closed.
    #[error("unterminated quote")]
    UnterminatedQuote,
}
