//! A `Script` tree lowered into the commands the agent runs: each `Run`
//! carries the innermost `In`, `As`, `IgnoreErrors` and `Verbosity` around
//! it; and those commands rendered for bash as the original did (post-fix
//! scripts).

use crate::lang::syntax::{CmdVerbosity, FilePath, List, Script};
use crate::lang::typed::Node;
use crate::vm::request::{GuestCommand, Output};

/// The context of nested commands.
#[derive(Clone, Debug, Default)]
struct Context {
    dir: Option<String>,
    user: Option<String>,
    ignore_errors: bool,
    output: Option<Output>,
}

/// The commands of a script, in order (none when it runs nothing).
pub fn flatten(script: &Script) -> Vec<GuestCommand> {
    let mut out = Vec::new();
    walk(script, &Context::default(), &mut out);
    out
}

fn walk(script: &Script, ctx: &Context, out: &mut Vec<GuestCommand>) {
    let nested = |ctx: Context, steps: &[Node<Script>], out: &mut Vec<_>| {
        for s in steps {
            walk(&s.value, &ctx, out);
        }
    };
    match script {
        Script::Begin(steps) => nested(ctx.clone(), &steps.value, out),
        Script::Run(cmd, args) => out.push(command(cmd, args, ctx)),
        Script::In(dir, steps) => nested(
            Context {
                dir: Some(dir.value.clone()),
                ..ctx.clone()
            },
            &steps.value,
            out,
        ),
        Script::As(user, steps) => nested(
            Context {
                user: (user.value != "root").then(|| user.value.clone()),
                ..ctx.clone()
            },
            &steps.value,
            out,
        ),
        Script::IgnoreErrors(ignore, steps) => nested(
            Context {
                ignore_errors: ignore.value,
                ..ctx.clone()
            },
            &steps.value,
            out,
        ),
        Script::Verbosity(level, steps) => nested(
            Context {
                output: Some(match level.value {
                    CmdVerbosity::Debug | CmdVerbosity::Verbose => Output::All,
                    CmdVerbosity::OnlyStdErr => Output::StderrOnly,
                    CmdVerbosity::Quiet => Output::Nothing,
                }),
                ..ctx.clone()
            },
            &steps.value,
            out,
        ),
        Script::NoOP => {}
    }
}

fn command(cmd: &FilePath, args: &List<String>, ctx: &Context) -> GuestCommand {
    let line = std::iter::once(cmd.value.as_str())
        .chain(args.value.iter().map(|a| a.value.as_str()))
        .collect::<Vec<_>>()
        .join(" ");
    GuestCommand {
        line,
        dir: ctx.dir.clone(),
        user: ctx.user.clone(),
        ignore_errors: ctx.ignore_errors,
        output: ctx.output.unwrap_or(Output::All),
    }
}

/// The script as the original rendered it for bash: `#!/usr/bin/env
/// bash`, `set -e`, one block per command, no trailing newline. Used for
/// the host-side post-fix script.
pub fn render_bash(commands: &[GuestCommand]) -> String {
    let mut blocks = vec!["#!/usr/bin/env bash".to_string(), "set -e".to_string()];
    for c in commands {
        let redirect = match c.output {
            Output::All => "",
            Output::StderrOnly => " > /dev/null",
            Output::Nothing => " &> /dev/null",
        };
        let mut lines = Vec::new();
        if c.ignore_errors {
            lines.push("set +e".to_string());
        }
        if let Some(d) = &c.dir {
            lines.push(format!("pushd '{d}'{redirect}"));
        }
        let runuser = match &c.user {
            Some(u) => format!("runuser -p -u {u} -- "),
            None => String::new(),
        };
        lines.push(format!("{runuser}{}{redirect}", c.line));
        if let Some(d) = &c.dir {
            lines.push(format!("popd{redirect} # '{d}'"));
        }
        if c.ignore_errors {
            lines.push("set -e".to_string());
        }
        blocks.push(lines.join("\n"));
    }
    blocks.join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n<T>(v: T) -> Node<T> {
        Node {
            value: v,
            span: Default::default(),
        }
    }

    fn run(cmd: &str, args: &[&str]) -> Node<Script> {
        n(Script::Run(
            n(cmd.to_string()),
            n(args.iter().map(|a| n(a.to_string())).collect()),
        ))
    }

    fn sample() -> Script {
        Script::Begin(n(vec![
            run("echo", &["a", "$$HOME"]),
            n(Script::In(
                n("/tmp".into()),
                n(vec![n(Script::As(
                    n("user".into()),
                    n(vec![n(Script::IgnoreErrors(
                        n(true),
                        n(vec![n(Script::Verbosity(
                            n(CmdVerbosity::Quiet),
                            n(vec![run("false", &[]), n(Script::NoOP)]),
                        ))]),
                    ))]),
                ))]),
            )),
            n(Script::As(n("root".into()), n(vec![run("id", &[])]))),
        ]))
    }

    #[test]
    fn innermost_context_wins() {
        let cmds = flatten(&sample());
        assert_eq!(cmds.len(), 3);
        assert_eq!(cmds[0].line, "echo a $$HOME");
        assert_eq!(cmds[0].output, Output::All);
        assert_eq!(cmds[1].dir.as_deref(), Some("/tmp"));
        assert_eq!(cmds[1].user.as_deref(), Some("user"));
        assert!(cmds[1].ignore_errors);
        assert_eq!(cmds[1].output, Output::Nothing);
        assert_eq!(cmds[2].user, None, "root means no user switch");
    }

    #[test]
    fn a_script_without_run_lowers_to_nothing() {
        let idle = Script::Begin(n(vec![n(Script::In(
            n("/tmp".into()),
            n(vec![n(Script::NoOP)]),
        ))]));
        assert!(flatten(&idle).is_empty());
    }

    #[test]
    fn bash_rendering_matches_the_original() {
        let text = render_bash(&flatten(&sample()));
        assert_eq!(
            text,
            "#!/usr/bin/env bash\n\nset -e\n\necho a $$HOME\n\nset +e\npushd '/tmp' &> /dev/null\n\
             runuser -p -u user -- false &> /dev/null\npopd &> /dev/null # '/tmp'\nset -e\n\nid"
        );
    }
}
