//! The `webllama` CLI as a shell user meets it: output piped into a reader that leaves early (`|
//! head`) ends the run quietly, not with a panic; `chat` refuses bad options before loading, and a
//! turn that fails (a conversation past the context) is reported and the chat goes on;
//! --chat-template-kwargs is checked before the model loads.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_webllama"))
}

/// `generate` streaming into a pipe whose reader takes one byte and closes it.
#[test]
fn a_closed_pipe_ends_generate_quietly() {
    let Some(model) = common::shared_fixture("tiny/tiny-llama2-Q8_0.gguf") else { return };
    let mut child = cli()
        .args(["generate", "--model", &model, "--prompt", "Once upon a time", "--max-tokens", "200", "--ignore-eos"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 1];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The pipe's read end is closed here (dropped with the ChildStdout).
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `chat`: an option out of range is refused before the model loads; a turn past the context is an
/// error for that turn, and the chat goes on (/reset, then a turn that fits).
#[test]
fn chat_refuses_bad_options_early_and_survives_a_failed_turn() {
    let Some(model) = common::shared_fixture("tiny/tiny-llama2-Q8_0.gguf") else { return };
    let refused = cli().args(["chat", "--model", "/nonexistent.gguf", "--temperature=-1"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("temperature") && !stderr.contains("nonexistent"), "{stderr}");

    let mut child = cli()
        .args(["chat", "--model", &model, "--ctx", "48", "--max-tokens", "4", "--temperature", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let long = "tell me a story about a dragon ".repeat(8);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{long}\n/reset\nhi\n").as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(stderr.contains("no longer fits the context"), "{stderr}");
    // The short turn after it was answered.
    assert!(stderr.contains("generated at"), "{stderr}");
}

/// --chat-template-kwargs: a JSON object checked before the model loads (a name the render sets,
/// or not an object, refused by name); a good one runs.
#[test]
fn chat_template_kwargs_are_checked_before_the_model_loads() {
    let Some(model) = common::shared_fixture("tiny/tiny-llama2-Q8_0.gguf") else { return };
    for (cmd, kwargs, why) in [
        (&["chat"][..], r#"{"messages": []}"#, "names \"messages\""),
        (&["generate", "--chat", "hi"], "[1]", "must be an object"),
        (&["generate", "--chat", "hi"], "{not json", "not JSON"),
    ] {
        let out =
            cli().args(cmd).args(["--model", "/nonexistent.gguf", "--chat-template-kwargs", kwargs]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{kwargs}");
        assert!(stderr.contains(why) && !stderr.contains("nonexistent"), "{kwargs}: {stderr}");
    }
    let ok = cli()
        .args(["generate", "--model", &model, "--chat", "hi", "--max-tokens", "2"])
        .args(["--chat-template-kwargs", r#"{"enable_thinking": false}"#])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}
