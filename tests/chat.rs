//! The default model's chat template renders with minijinja exactly as Jinja rendered the golden
//! prompt (default system prompt injected when none is given).

mod common;

use webllama::{weights, ChatTemplate, Message};

#[test]
fn smollm2_template_matches_the_golden_prompt() {
    let Some(path) = common::default_model() else { return };
    let g = weights::read_header(&path).unwrap();
    let t = ChatTemplate::new(g.get_str("tokenizer.chat_template").unwrap(), "<|im_start|>", "<|im_end|>").unwrap();
    let golden = common::golden("smollm2/generation_q4_1.json");
    let case = golden["results"].as_array().unwrap().iter().find(|r| r["name"] == "chat_headline").unwrap();
    let user = "Write a headline for this news: The stock market saw a significant increase today as major tech companies reported higher than expected earnings.";
    let got = t.render(&[Message::new("user", user)], true).unwrap();
    assert_eq!(got, case["prompt"].as_str().unwrap());
    // With a system message, none is injected.
    let got = t.render(&[Message::new("system", "Be brief."), Message::new("user", "Hi")], false).unwrap();
    assert_eq!(got, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

#[test]
fn template_errors_are_named() {
    let err = ChatTemplate::new("{% for %}", "", "").err().expect("a syntax error");
    assert!(err.to_string().starts_with("chat template: compiling"), "{err}");
    let t = ChatTemplate::new("{{ raise_exception('only user and assistant roles') }}", "", "").unwrap();
    let err = t.render(&[], true).unwrap_err().to_string();
    assert!(err.contains("only user and assistant roles"), "{err}");
}
