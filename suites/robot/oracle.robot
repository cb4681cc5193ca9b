*** Settings ***
Documentation       The board against the model: scenarios run on a fresh board each, and
...                 the oracle compares what the board did with what Linux 6.1 would have
...                 done. A failure lists the divergence rows; the log links each
...                 scenario's report and shows its timeline plot.
...
...                 python -m robot --variable BOARD:lab-bmc-3.yaml suites/robot/oracle.robot
Library             harness.robot.BmcHil    board=${BOARD}    out=${OUTPUT DIR}/bmc-hil
...                 tolerance_scale=${TOLERANCE SCALE}


*** Variables ***
${BOARD}                emulated
${TOLERANCE SCALE}      1.0


*** Test Cases ***
Handshake To Each Declared Service Matches The Model
    Handshake Should Match Model

Closed Port Matches The Model
    ${verdict}=    Run Scenario    closed-port
    Board Should Match Model    ${verdict}
