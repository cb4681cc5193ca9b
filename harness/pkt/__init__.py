"""packetdrill-syntax scripts against the model (and, later, the board): `bmc-hil pkt`.

script.py parses the language, target.py is where the local side runs (the `Target`
protocol; `ModelTarget`), run.py plays a script and matches what the target sends.
"""

from .run import Failure, ScriptResult, run_script
from .script import PktSyntaxError, Script, parse_file, parse_script
from .target import ModelTarget, NotModelled, Target

__all__ = ["Failure", "ScriptResult", "run_script", "PktSyntaxError", "Script", "parse_file", "parse_script",
           "ModelTarget", "NotModelled", "Target"]
