"""`kaudit --help` must stay fast: the CLI imports no heavy module at start-up.

Counting imported modules is deterministic, unlike timing; bench/ measures time.
"""

import json
import subprocess
import sys

HEAVY = ("paramiko", "requests", "ruamel", "jinja2", "urllib3", "cryptography")


def test_cli_import_pulls_in_no_heavy_module():
    code = (
        "import sys, json\n"
        "import kaudit.cli\n"
        "print(json.dumps(sorted(m for m in sys.modules)))\n"
    )
    cp = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(cp.stdout)
    heavy = sorted({m.split(".")[0] for m in loaded if m.split(".")[0] in HEAVY})
    assert heavy == [], f"imported at start-up: {heavy}"
