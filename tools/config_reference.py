"""docs/config.md: every config field, its default in each dataset config, and its comment in the source.

    python tools/config_reference.py           # rewrite docs/config.md
    python tools/config_reference.py --check   # exit 1 when docs/config.md is stale (tests run this)

Defaults come from loading each configs/*.py without variants; descriptions are the comments beside (or
just above) the field's assignment in avjax/configs/base.py or the dataset config, so the page cannot say
something the code does not.
"""
import argparse
import ast
import importlib.util
import io
import json
import os
import sys
import tokenize

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = ("synthetic", "ave", "music", "kinetics", "folder")
SOURCES = ["avjax/configs/base.py"] + [f"configs/{name}.py" for name in CONFIGS]
OUT = os.path.join(REPO, "docs", "config.md")


def load(name):
    spec = importlib.util.spec_from_file_location(f"avjax_config_{name}", os.path.join(REPO, "configs", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def flatten(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict) and value and key != "runs":
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _target_path(node):
    """`c.train.lr` -> 'train.lr' (None for anything but an attribute chain on a name)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join(reversed(parts)) if isinstance(node, ast.Name) and parts else None


def _dict_keywords(call):
    """The keywords of `dict(...)` / `ConfigDict(dict(...))` (nested: the innermost dict call)."""
    while isinstance(call, ast.Call):
        if getattr(call.func, "id", getattr(call.func, "attr", "")) == "dict":
            return call.keywords
        call = call.args[0] if call.args else None
    return []


def _lines_to_fields(tree):
    """{line: [field paths]} of every field assignment, and {line: path} of section assignments (a
    `ConfigDict`/`dict` value: the comment lines just above them describe the section)."""
    fields, sections = {}, {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign) or len(node.targets) != 1:
            continue
        path = _target_path(node.targets[0])
        if path is None:
            continue
        fields.setdefault(node.lineno, []).append(path)
        keywords = _dict_keywords(node.value)
        if isinstance(node.value, ast.Call):
            sections[node.lineno] = path
        for kw in keywords:
            if kw.arg:
                fields.setdefault(kw.value.lineno, []).append(f"{path}.{kw.arg}")
    return fields, sections


def comments(source: str, above_fields: bool = True) -> dict:
    """{path: description} from one config source: a comment at the end of a line describes the fields
    on that line (continued by comment lines aligned under it); comment lines just above a section's
    assignment describe the section, and (`above_fields`) those above a field's line its fields."""
    fields, sections = _lines_to_fields(ast.parse(source))
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    code_lines = {t.start[0] for t in tokens if t.type not in (
        tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)}
    out, inline, above = {}, None, []   # inline: (paths, column) of the last end-of-line comment
    for tok in tokens:
        line = tok.start[0]
        if tok.type != tokenize.COMMENT:
            if line in code_lines:
                if above and line in sections:
                    out.setdefault(sections[line], " ".join(above))
                elif above and above_fields:
                    for path in fields.get(line, []):
                        out.setdefault(path, " ".join(above))
                above = []
                if tok.type not in (tokenize.NEWLINE, tokenize.NL) and line not in fields:
                    inline = None
            continue
        text = tok.string.lstrip("#").strip()
        if line in code_lines:
            paths = fields.get(line, [])
            for path in paths:
                out[path] = text
            inline = (paths, tok.start[1]) if paths else None
        elif inline and tok.start[1] == inline[1]:
            for path in inline[0]:
                out[path] += " " + text
        else:
            inline = None
            above.append(text)
    return out


def describe() -> dict:
    merged = {}
    for rel in SOURCES:
        with open(os.path.join(REPO, rel)) as f:
            for path, text in comments(f.read(), above_fields=rel == SOURCES[0]).items():
                merged.setdefault(path, text)
    return merged


def _cell(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return "`" + text.replace("|", "\\|") + "`"


def _value(key, value):
    if key == "runs":   # the run configs are documented by avjax.configs.base.run
        return "`" + ", ".join(value) + "`"
    return _cell(value)


def render() -> str:
    configs = {name: dict(flatten(json.loads(load(name).to_json()))) for name in CONFIGS}
    seen = []
    for values in configs.values():
        seen += [k for k in values if k not in seen]
    tops = list(dict.fromkeys("general" if "." not in k else k.split(".")[0] for k in seen))
    top_of = lambda key: "general" if "." not in key else key.split(".")[0]  # noqa: E731
    docs = describe()
    lines = ["# Config reference", "",
             "_Generated by `python tools/config_reference.py` from the configs (defaults without variants) and",
             "the comments beside each field in the source; `tests/configs/test_config_reference.py` fails when",
             "this page is stale._ Override any field with `--config.<field>=value`; variants such as",
             "`:runlocal` or `:defense=all` change several at once (see each config's docstring). `″`: as in",
             "the first column; `–`: not a field of that config.", ""]
    for top in tops:
        keys = [k for k in seen if top_of(k) == top]
        lines += [f"## {top}", ""]
        for section in sorted({k.rsplit(".", 1)[0] for k in keys if "." in k}):
            if section in docs:
                lines.append(f"- `{section}`: {docs[section]}")
        if lines[-1] != "":
            lines.append("")
        lines += ["| field | " + " | ".join(CONFIGS) + " | description |", "|---|" + "---|" * len(CONFIGS) + "---|"]
        for key in keys:
            values = [_value(key, configs[n][key]) if key in configs[n] else "–" for n in CONFIGS]
            if len(set(values)) == 1:
                values = [values[0]] + ["″"] * (len(values) - 1)
            text = docs.get(key, "") if key not in [k.rsplit(".", 1)[0] for k in keys if "." in k] else ""
            lines.append(f"| `{key}` | " + " | ".join(values) + f" | {text.replace('|', chr(92) + '|')} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        current = open(OUT).read() if os.path.exists(OUT) else ""
        if current != text:
            print(f"{OUT} is stale: run python tools/config_reference.py", file=sys.stderr)
            return 1
        return 0
    with open(OUT, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
