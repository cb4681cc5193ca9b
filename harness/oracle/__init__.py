"""The oracle: what the board received drives the stack model; what the model says Linux
would have sent is compared with what the board sent. A one-way pipeline, each stage
importing only the ones before it:

    observe  artifacts (pcap, console.log, qmp.jsonl, host-events.jsonl) -> Observation
    inputs   the harness's records and the frames that reached the board -> typed model
             inputs, and the values learnt from the board with their bounds (bounds.LEARNT)
    loop     models.board.Board driven by those inputs -> ModelRun
    judge    predicted against observed -> Verdict (rows, learnt values, error)
"""

from harness.oracle.bounds import CONSTANTS, LEARNT, Learnt
from harness.oracle.judge import Tolerance, Verdict, check_run
from harness.oracle.observe import Artifacts, Observation, OracleError, observe

__all__ = ["Artifacts", "CONSTANTS", "LEARNT", "Learnt", "Observation", "OracleError", "Tolerance", "Verdict",
           "check_run", "observe"]
