#!/usr/bin/env python3
"""Renders every chat template in tests/fixtures/templates with Jinja2 as Hugging Face's
apply_chat_template does (sandboxed, trim_blocks, lstrip_blocks, loopcontrols, raise_exception,
strftime_now, a tojson without ASCII escaping) for a few plain message lists, and writes what Jinja
gives next to each template as <template>.<scenario>.txt: the expectation tests/chat.rs holds
minijinja to (one scenario with a chat_template_kwarg, enable_thinking false). strftime_now is pinned to 2026-11-27 so the outputs are stable.
Run: pip install jinja2 && python3 scripts/render_templates.py"""
import datetime
import glob
import json
import os

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "templates")
DATE = datetime.datetime(2026, 11, 27)
# name: (messages, add_generation_prompt, chat_template_kwargs)
SCENARIOS = {
    "user": ([{"role": "user", "content": "Hello! Who are you?"}], True, {}),
    "system_user": ([{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a color."}], True, {}),
    "multi_turn": (
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello, how can I help?"},
            {"role": "user", "content": "Tell me a joke."},
        ],
        True,
        {},
    ),
    "no_generation_prompt": ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}], False, {}),
    "no_thinking": ([{"role": "user", "content": "Hi"}], True, {"enable_thinking": False}),
}


def raise_exception(message):
    raise TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = lambda fmt: DATE.strftime(fmt)

for path in sorted(glob.glob(os.path.join(HERE, "*.jinja"))):
    tmpl = env.from_string(open(path, encoding="utf-8").read())
    for name, (messages, gen, kwargs) in SCENARIOS.items():
        out = path[: -len(".jinja")] + f".{name}.txt"
        try:
            text = tmpl.render(messages=messages, add_generation_prompt=gen, bos_token="<s>", eos_token="</s>", **kwargs)
        except TemplateError as e:
            text = f"ERROR: {e}"
        with open(out, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        print(out, len(text))
