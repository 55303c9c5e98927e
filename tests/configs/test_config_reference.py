"""docs/config.md is generated from the configs and cannot go stale."""
import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _tool():
    spec = importlib.util.spec_from_file_location("config_reference", os.path.join(REPO, "tools", "config_reference.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_is_current():
    assert _tool().main(["--check"]) == 0, "run: python tools/config_reference.py"


def test_every_field_of_every_config_is_listed_with_its_value():
    tool = _tool()
    text = open(tool.OUT).read()
    for name in tool.CONFIGS:
        for key, _ in tool.flatten(tool.load(name).to_dict()):
            assert f"| `{key}` |" in text, (name, key)


def test_comments_describe_fields_sections_and_continuations():
    source = '''c.a = ConfigDict(dict(
    x=1,   # the x
           # continued
    y=2))
# the b section
c.b = ConfigDict(dict(z=3))
c.w = 4  # the w
'''
    assert _tool().comments(source) == {"a.x": "the x continued", "b": "the b section", "w": "the w"}
