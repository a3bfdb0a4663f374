//! Composition of a kernel's WGSL before it is compiled: the shared pieces it includes
//! and the lines of its variant, in the manner of a C preprocessor cut down to four line
//! directives, each alone on its line (they are WGSL comments, so editors and formatters
//! leave them be):
//!
//! ```text
//! //#include "piece.wgsl"   the piece's text (itself composed) from `shaders/`
//! //#if FLAG               the lines up to the matching `//#else` or `//#endif` are kept
//! //#else                  when FLAG is true, the lines after it when it is false
//! //#endif
//! ```
//!
//! The caller names every flag with its value. An unknown flag or piece, an unbalanced
//! block or any other `//#` line is an error, so that a typo cannot silently drop code.

use crate::error::{ClipError, Result};

/// A file of `shaders/`, compiled in: `(name, text)`.
macro_rules! piece {
    ($file:literal) => {
        ($file, include_str!(concat!("../../shaders/", $file)))
    };
}

/// The pieces that kernels may include, by file name.
const PIECES: &[(&str, &str)] = &[
    piece!("workgroup_reduce.wgsl"),
    piece!("elementwise.wgsl"),
    piece!("matmul_common.wgsl"),
];

/// Deeper than this is a cycle of includes.
const MAX_DEPTH: usize = 8;

/// `source` (named `name` in errors) with its includes resolved and the blocks of each
/// `(flag, value)` in `flags` kept or dropped: plain WGSL, no directive left.
pub fn compose(name: &str, source: &str, flags: &[(&str, bool)]) -> Result<String> {
    let mut out = String::with_capacity(source.len());
    compose_into(&mut out, name, source, flags, PIECES, 0)
        .map_err(|e| ClipError::Internal(format!("composing the WGSL of {name}: {e}")))?;
    Ok(out)
}

/// One `//#if` block being read: whether the enclosing lines are kept, whether its
/// condition holds, and whether its `//#else` has been seen.
struct Block {
    outer: bool,
    cond: bool,
    in_else: bool,
}

impl Block {
    fn keeps(&self) -> bool {
        self.outer && (self.cond != self.in_else)
    }
}

fn compose_into(
    out: &mut String,
    name: &str,
    source: &str,
    flags: &[(&str, bool)],
    pieces: &[(&str, &str)],
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("includes nest deeper than {MAX_DEPTH} at {name}"));
    }
    let mut blocks: Vec<Block> = Vec::new();
    for (i, line) in source.lines().enumerate() {
        let at = || format!("{name}:{}", i + 1);
        let keep = blocks.last().is_none_or(Block::keeps);
        let Some(directive) = line.trim().strip_prefix("//#") else {
            if keep {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        };
        let (word, arg) = directive
            .split_once(char::is_whitespace)
            .map_or((directive, ""), |(w, a)| (w, a.trim()));
        match (word, arg) {
            ("include", arg) => {
                let piece = arg
                    .strip_prefix('"')
                    .and_then(|a| a.strip_suffix('"'))
                    .ok_or_else(|| format!("{}: `//#include` wants a \"file\"", at()))?;
                let &(_, text) = pieces
                    .iter()
                    .find(|(n, _)| *n == piece)
                    .ok_or_else(|| format!("{}: no shader piece `{piece}`", at()))?;
                if keep {
                    compose_into(out, piece, text, flags, pieces, depth + 1)?;
                }
            }
            ("if", flag) => {
                let &(_, cond) = flags
                    .iter()
                    .find(|(f, _)| *f == flag)
                    .ok_or_else(|| format!("{}: unknown flag `{flag}`", at()))?;
                blocks.push(Block {
                    outer: keep,
                    cond,
                    in_else: false,
                });
            }
            ("else", "") => match blocks.last_mut() {
                Some(b) if !b.in_else => b.in_else = true,
                _ => return Err(format!("{}: `//#else` without its `//#if`", at())),
            },
            ("endif", "") => {
                blocks
                    .pop()
                    .ok_or_else(|| format!("{}: `//#endif` without its `//#if`", at()))?;
            }
            _ => return Err(format!("{}: unknown directive `{}`", at(), line.trim())),
        }
    }
    if blocks.is_empty() {
        Ok(())
    } else {
        Err(format!("{name}: {} `//#if` left open", blocks.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PIECES: &[(&str, &str)] = &[
        ("one.wgsl", "fn one() -> f32 { return 1.0; }\n"),
        (
            "flagged.wgsl",
            "//#if A\nconst A = 1;\n//#else\nconst A = 0;\n//#endif\n",
        ),
        ("nested.wgsl", "//#include \"one.wgsl\"\nconst N = 2;\n"),
        ("loop.wgsl", "//#include \"loop.wgsl\"\n"),
    ];

    fn run(source: &str, flags: &[(&str, bool)]) -> Result<String, String> {
        let mut out = String::new();
        compose_into(&mut out, "test.wgsl", source, flags, PIECES, 0).map(|()| out)
    }

    #[test]
    fn includes_are_resolved_recursively_with_the_callers_flags() {
        let src = "//#include \"nested.wgsl\"\n  //#include \"flagged.wgsl\"\nfn main() {}\n";
        assert_eq!(
            run(src, &[("A", true)]).unwrap(),
            "fn one() -> f32 { return 1.0; }\nconst N = 2;\nconst A = 1;\nfn main() {}\n"
        );
        assert_eq!(
            run(src, &[("A", false)]).unwrap(),
            "fn one() -> f32 { return 1.0; }\nconst N = 2;\nconst A = 0;\nfn main() {}\n"
        );
    }

    #[test]
    fn blocks_keep_the_lines_of_their_branch_and_nest() {
        let src = "a\n//#if X\nb\n//#if Y\nc\n//#else\nd\n//#endif\n//#else\ne\n//#if Y\nf\n//#endif\n//#endif\ng\n";
        let flags = |x, y| [("X", x), ("Y", y)];
        assert_eq!(run(src, &flags(true, true)).unwrap(), "a\nb\nc\ng\n");
        assert_eq!(run(src, &flags(true, false)).unwrap(), "a\nb\nd\ng\n");
        assert_eq!(run(src, &flags(false, true)).unwrap(), "a\ne\nf\ng\n");
        assert_eq!(run(src, &flags(false, false)).unwrap(), "a\ne\ng\n");
    }

    #[test]
    fn an_include_in_a_dropped_block_is_not_read() {
        let src = "//#if A\n//#include \"one.wgsl\"\n//#endif\nx\n";
        assert_eq!(run(src, &[("A", false)]).unwrap(), "x\n");
    }

    #[test]
    fn mistakes_are_errors_naming_the_line() {
        let flags = &[("A", true)];
        let err = |src: &str| run(src, flags).unwrap_err();
        assert!(err("x\n//#include \"nope.wgsl\"\n")
            .contains("test.wgsl:2: no shader piece `nope.wgsl`"));
        assert!(err("//#include one.wgsl\n").contains("wants a \"file\""));
        assert!(err("//#if B\n//#endif\n").contains("unknown flag `B`"));
        assert!(err("//#if A\nx\n").contains("1 `//#if` left open"));
        assert!(err("//#endif\n").contains("`//#endif` without its `//#if`"));
        assert!(err("//#else\n").contains("`//#else` without its `//#if`"));
        assert!(err("//#if A\n//#else\n//#else\n//#endif\n").contains("test.wgsl:3"));
        assert!(err("//#ifdef A\n").contains("unknown directive `//#ifdef A`"));
        assert!(err("//#endif A\n").contains("unknown directive"));
        assert!(err("//#include \"loop.wgsl\"\n").contains("deeper than"));
        // An error in a piece names the piece.
        assert!(run("//#include \"flagged.wgsl\"\n", &[])
            .unwrap_err()
            .contains("flagged.wgsl:1"));
    }

    #[test]
    fn other_comments_pass_through() {
        let src = "// #if is prose here\n/// doc\nx // trailing //#if\n";
        assert_eq!(run(src, &[]).unwrap(), src);
    }

    #[test]
    fn errors_are_internal() {
        let e = compose("k.wgsl", "//#if NOPE\n", &[]).unwrap_err();
        assert_eq!(e.code(), "internal");
        assert!(e.to_string().contains("k.wgsl:1: unknown flag `NOPE`"));
    }
}
