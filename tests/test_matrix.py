"""The coverage matrix (bench/matrix.py) on the model-as-board: the README's table is what
the matrix gives now, every field of the schema and every constant class has a seed, the
healthy boards are clean, and the cells the issue names are caught or listed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import matrix  # noqa: E402

from harness.board.modelboard import PLAYER_CONSTANTS  # noqa: E402
from models.config import SYSCTL_DEFAULTS, FirmwareConfig  # noqa: E402


@pytest.fixture(scope="module")
def result():
    return matrix.run_matrix(list(matrix.SEEDS), matrix.scenario_names())


def summary(result, field: str, seed: str | None = None) -> dict:
    found = [s for s in result["summary"] if s["field"] == field and (seed is None or s["seed"] == seed)]
    assert len(found) == 1, (field, seed, [s["seed"] for s in found])
    return found[0]


def test_readme_table_is_current(result):
    block = matrix.readme_block((ROOT / "README.md").read_text())
    assert block is not None, "README.md has no coverage-matrix block"
    assert block == matrix.markdown(result), "README.md's matrix is stale: run `python bench/matrix.py --write-readme`"


def test_healthy_boards_are_clean_in_every_scenario(result):
    """A seeded cell means something only if the same board unseeded passes."""
    dirty = [(c["declared"], c["scenario"], c["rows"], c["error"]) for c in result["healthy"] if c["caught"]]
    assert not dirty
    assert all(c["predicted"] > 0 for c in result["healthy"])


def schema_fields() -> set[str]:
    """Every field a firmware config holds, as the matrix names them."""
    d = FirmwareConfig.default().to_dict()
    out = {"hostname", "routes", *(f"interface.{k}" for k in d["interface"]), *SYSCTL_DEFAULTS}
    out |= {f"services.{name}.{k}" for name in ("ssh", "http") for k in d["services"][name]}
    out |= {f"watchdog.{k}" for k in d["watchdog"]}
    return out


def test_every_schema_field_and_constant_class_has_a_seed():
    seeded = {s.field for s in matrix.SEEDS}
    assert schema_fields() - seeded == set()
    assert set(PLAYER_CONSTANTS) - seeded == set()


def test_every_seed_is_caught_or_says_why_not(result):
    for s in result["summary"]:
        assert s["status"] in ("caught", "uncaught", "unobservable"), s
        assert (s["status"] == "caught") == bool(s["caught_by"]), s
        assert s["status"] == "caught" or len(s["reason"]) > 40, s


def test_unobservable_seeds_leave_the_players_records_unchanged(result):
    """A value Linux makes unobservable must not change what the model does either."""
    for s in result["summary"]:
        if s["status"] == "unobservable":
            assert s["same_as_healthy"], s


def rows_of(s: dict, scenario: str) -> set[str]:
    return set(s["caught_by"].get(scenario, []))


def test_the_cells_the_issue_names(result):
    # slirp's SYN offers MSS alone, so only the board's own SYN and its SYN-ACK to a Linux
    # peer's SYN (the harness's wire) can show SACK and window scaling
    sack = summary(result, "net.ipv4.tcp_sack", "0")
    assert "FIELD_MISMATCH TCP_SYNACK.tcp_sack_perm" in rows_of(sack, "synack-retransmit")
    assert "FIELD_MISMATCH TCP_SYN.tcp_sack_perm" in rows_of(sack, "syn-retransmit")
    ws = summary(result, "net.ipv4.tcp_window_scaling", "0")
    assert "FIELD_MISMATCH TCP_SYNACK.tcp_wscale" in rows_of(ws, "synack-retransmit")
    assert "FIELD_MISMATCH TCP_SYN.tcp_wscale" in rows_of(ws, "syn-retransmit")
    mtu = summary(result, "interface.mtu", "1400")
    assert "FIELD_MISMATCH TCP_SYNACK.tcp_mss" in rows_of(mtu, "handshake")
    closed = summary(result, "services.http.enabled", "false")
    assert rows_of(closed, "handshake") == {"MISSING TCP_SYNACK", "EXTRA TCP_RST"}
    wdt = summary(result, "watchdog.timeout")
    assert rows_of(wdt, "watchdog-starve") == {"MISSING QMP_RESET", "EXTRA QMP_RESET"}
    phy = summary(result, "PHY_STATE_TIME")
    assert phy["status"] == "caught"
    assert any(r.split()[1] in ("LINK_UP", "LINK_DOWN") for rows in phy["caught_by"].values() for r in rows), phy
    ports = summary(result, "net.ipv4.ip_local_port_range", "1024 2048")
    assert any("TCP_SYN" in r for rows in ports["caught_by"].values() for r in rows), ports
    assert "MISSING TCP_SYN" in rows_of(summary(result, "net.ipv4.tcp_syn_retries", "3"), "syn-retransmit-resume")
    # two echo replies queued on one resolution: a 1000-byte arp_queue keeps only the newest
    assert rows_of(summary(result, "net.ipv4.neigh.default.unres_qlen_bytes", "1000"),
                   "arp-queue") == {"MISSING ICMP_ECHO_REPLY"}
    # syn-flood (tcp_conn_request): without cookies httpd's 11th and 12th SYNs get no SYN-ACK
    # and the flood line says "Dropping request"; somaxconn 1 caps every backlog at 1 (the
    # rest are cookies, never retransmitted, and ssh's queue overflows too); tcp_max_syn_backlog
    # 16 (declared without cookies) drops ssh's SYNs past three quarters of it
    assert rows_of(summary(result, "net.ipv4.tcp_syncookies", "0"), "syn-flood") == {
        "MISSING TCP_SYNACK", "FIELD_MISMATCH SYN_FLOOD.detail1"}
    assert rows_of(summary(result, "net.core.somaxconn", "1"), "syn-flood") == {"MISSING TCP_SYNACK",
                                                                                "EXTRA SYN_FLOOD"}
    assert rows_of(summary(result, "net.ipv4.tcp_max_syn_backlog"), "syn-flood") == {"MISSING TCP_SYNACK"}
    # keepalive-idle: httpd sets SO_KEEPALIVE on what it accepts, and the idle peer answers
    # no probe (tcp_keepalive_timer). Declared 7200 s: nothing after the handshake, so a
    # probe 1 s in is extra; declared 2 s / 2 s / 2: probes at 2 and 4 s, the RST at 6 s
    assert rows_of(summary(result, "net.ipv4.tcp_keepalive_time", "1"), "keepalive-idle") == {"EXTRA TCP_PROBE"}
    assert {"EARLY TCP_PROBE", "MISSING TCP_RST", "EXTRA TCP_RST"} == rows_of(
        summary(result, "net.ipv4.tcp_keepalive_intvl"), "keepalive-idle")
    assert rows_of(summary(result, "net.ipv4.tcp_keepalive_probes"), "keepalive-idle") == {
        "MISSING TCP_PROBE", "MISSING TCP_RST", "EXTRA TCP_RST"}
    assert rows_of(summary(result, "services.http.keepalive"), "keepalive-idle") == {"MISSING TCP_PROBE",
                                                                                     "MISSING TCP_RST"}
    assert "EXTRA TCP_PROBE" in rows_of(summary(result, "services.ssh.keepalive"), "handshake")
    # fin-wait2-orphan: nc shut its side and was killed in FIN_WAIT2 (tcp_close ->
    # tcp_time_wait(TCP_FIN_WAIT2, tcp_fin_time)); the peer's FIN 8 s later finds the
    # timewait sock with the declared 60 s (an ACK), nothing with 5 s (tcp_v4_send_reset)
    assert rows_of(summary(result, "net.ipv4.tcp_fin_timeout", "5"), "fin-wait2-orphan") == {
        "MISSING TCP_ACK", "EXTRA TCP_RST"}
    # declared 6 (5): the first SYN (SYN-ACK) it no longer sends is missing, 31 s or 63 s
    # after the first: only a scenario that waits that long shows it
    for field, seed, giveup in (("net.ipv4.tcp_syn_retries", "4", "syn-giveup"),
                                ("net.ipv4.tcp_syn_retries", "5", "syn-giveup"),
                                ("net.ipv4.tcp_synack_retries", "4", "synack-giveup")):
        s = summary(result, field, seed)
        if giveup in result["scenarios"]:
            assert {"MISSING TCP_SYN", "MISSING TCP_SYNACK"} & rows_of(s, giveup), s
        else:
            assert s["status"] == "uncaught" and giveup in s["reason"], s


def test_emulated_cells_must_be_chosen():
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "matrix.py"), "--board", "emulated"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "chosen cells only" in out.stderr
