*** Settings ***
Documentation       The board's behaviour a BMC's users rely on, in keyword form (the same
...                 behaviours as suites/test_board_behaviour.py). Run against any board:
...
...                 python -m robot --variable BOARD:lab-bmc-3.yaml suites/robot
Library             harness.robot.BmcHil    board=${BOARD}    out=${OUTPUT DIR}/bmc-hil
...                 tolerance_scale=${TOLERANCE SCALE}
Suite Setup         Boot Board


*** Variables ***
${BOARD}                emulated
${TOLERANCE SCALE}      1.0


*** Test Cases ***
Declared Services Answer
    @{services}=    Get Open Services
    FOR    ${service}    IN    @{services}
        Service Should Answer    ${service}
    END

Closed Ports Are Refused
    @{closed}=    Get Closed Services
    FOR    ${service}    IN    @{closed}
        Service Should Be Refused    ${service}
    END

Link Flap While Idle Is Logged Within The Phylib Window
    ${window}=    Get Link Detection Window
    Set Link Down
    Link Down Should Be Logged Within    ${window}
    Sleep    2 s
    Set Link Up
    Link Up Should Be Logged Within    ${window}

SSH Session Survives A Link Flap
    ${window}=    Get Link Detection Window
    ${command}=    Start SSH Command    sleep 5; echo survived
    Sleep    1 s
    Flap Link    down=2 s    up=0 s
    Link Down Should Be Logged Within    ${window}
    Link Up Should Be Logged Within    ${window}
    ${out}=    Read SSH Command Output    ${command}
    Should Be Equal    ${out.strip()}    survived

Starved Watchdog Resets The Board And SSH Comes Back
    [Tags]    disruptive
    ${latest}=    Get Watchdog Reset Window    5    period=1
    ${before}=    Execute Over SSH    cat /proc/sys/kernel/random/boot_id
    Start Watchdog    timeout=5    period=1
    Sleep    1.5 s
    Starve Watchdog
    Board Should Reset Within    ${latest}
    Read Console Until    Linux version    timeout=30 s
    Wait Until SSH Answers    timeout=90 s
    ${after}=    Execute Over SSH    cat /proc/sys/kernel/random/boot_id
    Should Not Be Equal    ${before}    ${after}
    [Teardown]    Boot Board    fresh=True

Board Comes Back After A Reboot
    [Tags]    disruptive
    ${before}=    Execute Over SSH    cat /proc/sys/kernel/random/boot_id
    # -f: the emulated firmware's init (a shell script) ignores a plain `reboot`.
    Start SSH Command    reboot -f
    Read Console Until    Linux version    timeout=30 s
    Wait Until SSH Answers    timeout=90 s
    ${after}=    Execute Over SSH    cat /proc/sys/kernel/random/boot_id
    Should Not Be Equal    ${before}    ${after}
    [Teardown]    Boot Board    fresh=True
