"""The keyword documentation a QA engineer reads (libdoc): the importing section says what
each argument is and one default for `out`, and the markup renders."""

from __future__ import annotations

import json
import subprocess
import sys


def test_libdoc_documents_the_import_arguments(tmp_path):
    out = tmp_path / "BmcHil.json"
    subprocess.run([sys.executable, "-m", "robot.libdoc", "harness.robot.BmcHil", str(out)], check=True,
                   capture_output=True, timeout=120)
    doc = json.loads(out.read_text())
    (init,) = doc["inits"]
    assert "Initialize self" not in init["doc"]
    for arg in ("board", "out", "tolerance_scale"):
        assert f"<code>{arg}</code>" in init["doc"], arg
    assert [a["name"] for a in init["args"]] == ["board", "out", "tolerance_scale"]
    # one default for `out`, the same in the introduction and the importing section
    assert "${OUTPUT DIR}/bmc-hil" in init["doc"] and "${OUTPUT DIR}/board" not in doc["doc"]
    assert "``" not in doc["doc"] and "``" not in init["doc"]     # no markup left unrendered
