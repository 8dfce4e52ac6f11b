#!/usr/bin/env python3
"""Renders each chat template in tests/fixtures/templates with Jinja2 (as render_templates.py does:
Hugging Face's apply_chat_template settings) for one tool-call round trip: two tools, a user
question, the assistant's call (arguments as an object, content ""), the tool's result and the
generation prompt. Writes <template>.tools.txt ("ERROR: msg" where Jinja raises): what tests/tools.rs
holds minijinja to for the templates that render tools themselves. Keep TOOLS and MESSAGES in step
with tests/tools.rs. Run: pip install jinja2 && python3 scripts/render_tool_templates.py"""
import glob
import os

HERE = os.path.dirname(__file__)

TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "The current weather in a city.",
     "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "The local time in a timezone.",
     "parameters": {"type": "object", "properties": {"timezone": {"type": "string"}}, "required": ["timezone"]}}},
]
MESSAGES = [
    {"role": "user", "content": "What is the weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
    {"role": "tool", "content": "{\"temperature\": 18}", "tool_call_id": "call_1", "name": "get_weather"},
]

if __name__ == "__main__":
    # render_templates.py's environment, without running its own renders.
    src = open(os.path.join(HERE, "render_templates.py"), encoding="utf-8").read()
    head = src.split("\nfor path in sorted(")[0]
    ns = {"__file__": os.path.join(HERE, "render_templates.py")}
    exec(compile(head, "render_templates.py", "exec"), ns)
    env, TemplateError = ns["env"], ns["TemplateError"]
    for path in sorted(glob.glob(os.path.join(ns["HERE"], "*.jinja"))):
        tmpl = env.from_string(open(path, encoding="utf-8").read())
        out = path[: -len(".jinja")] + ".tools.txt"
        try:
            text = tmpl.render(messages=MESSAGES, tools=TOOLS, add_generation_prompt=True, bos_token="<s>", eos_token="</s>")
        except (TemplateError, TypeError) as e:
            text = f"ERROR: {e}"
        with open(out, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        print(out, len(text))
