"""The README's promises that code can check."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _bash_blocks(text):
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = [line for block in _bash_blocks(readme) for line in block.splitlines()
                if line and not line.startswith("#")]
    test_cmd = next(c for c in commands if "pytest" in c)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in ci


def test_readme_main_command_uses_the_default_config():
    readme = (ROOT / "README.md").read_text()
    commands = [line for block in _bash_blocks(readme) for line in block.splitlines()
                if line and not line.startswith("#")]
    assert len(commands) == 2
    run_cmd = next(c for c in commands if "mcsim run" in c)
    assert "configs/base.toml" in run_cmd and "pip install" in run_cmd
    assert (ROOT / "configs" / "base.toml").is_file()
