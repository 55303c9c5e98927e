"""The Python examples of docs/api.md run as written, in order, in one namespace."""
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_api_examples_run():
    text = open(os.path.join(REPO, "docs", "api.md")).read()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 4
    namespace = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/api.md block {i + 1}", "exec"), namespace)
    assert namespace["result"]["n"] == 4 and namespace["codes"].shape == (3, 64)
