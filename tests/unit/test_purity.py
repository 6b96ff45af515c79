"""The modules that decide must not reach the outside world (docs/architecture.md: pure rules,
thin shells). Which package may import which is import-linter's (pyproject.toml)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PURE = ["schemas/identifiers.py", "schemas/raw.py", "schemas/project.py", "schemas/topics.py",
        "gateway/errors.py", "gateway/projects.py", "gateway/addresses.py",
        "gateway/responses.py", "processors/identity.py", "processors/visits.py",
        "processors/campaigns.py", "processors/timestamps.py", "processors/actions.py",
        "processors/addresses.py", "processors/profiles.py",
        "processors/dedupe.py", "processors/quotas.py",
        "processors/deadlines.py", "schemas/trigger.py", "triggers/rules.py",
        "gateway/jsactions.py", "gateway/expansion.py", "logstore/lines.py", "schemas/action.py",
        "runtime/compacted.py", "triggers/held.py", "schemas/warning.py",
        "runtime/warning_budget.py", "processors/warn.py"]
WORLD = {"os", "time", "asyncio", "socket", "subprocess", "aiokafka", "faust", "fastapi",
         "starlette", "uvicorn", "httpx", "random", "pathlib", "datetime", "aiohttp"}


@pytest.mark.parametrize("module", PURE)
def test_pure_module_imports_nothing_from_the_outside_world(module):
    tree = ast.parse((ROOT / module).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & WORLD, f"{module} imports {sorted(imported & WORLD)}"
