"""The firmware config schema shared by the image recipe and the model."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.errors import ImageBuildError
from harness.image.initramfs import render_init
from models.config import DEFAULT_CONFIG, SERVICE_IP_TOS_DEFAULTS, SYSCTL_DEFAULTS, ConfigError, FirmwareConfig


def cfg(**over):
    return FirmwareConfig.from_dict({**DEFAULT_CONFIG, **over}, source="fw.yaml")


def test_default_round_trips_through_to_dict():
    c = FirmwareConfig.default()
    assert FirmwareConfig.from_dict(c.to_dict()) == c


def test_unset_sysctl_reads_linux_default_and_set_one_reads_the_config():
    c = cfg(sysctls={"net.ipv4.tcp_synack_retries": 2})
    assert c.sysctl("net.ipv4.tcp_synack_retries") == 2
    assert c.sysctl("net.ipv4.tcp_syn_retries") == SYSCTL_DEFAULTS["net.ipv4.tcp_syn_retries"] == 6


def test_route_table_has_the_onlink_prefix_then_the_default_route():
    table = cfg().route_table()
    assert table[0].destination == ipaddress.IPv4Network("10.0.2.0/24") and table[0].gateway is None
    assert table[1].destination == ipaddress.IPv4Network("0.0.0.0/0")
    assert table[1].gateway == ipaddress.IPv4Address("10.0.2.2")


@pytest.mark.parametrize("over, field, words", [
    ({"sysctls": {"net.ipv4.tcp_fastopen": 1}}, "sysctls.net.ipv4.tcp_fastopen", "unknown sysctl"),
    ({"sysctls": {"net.ipv4.tcp_syn_retries": "six"}}, "sysctls.net.ipv4.tcp_syn_retries", "expected int"),
    ({"sysctls": {"net.ipv4.ip_local_port_range": "61000 32768"}}, "ip_local_port_range", "LOW HIGH"),
    ({"interface": {"address": "10.0.2.15", "mac": "52:54:00:12:34:56"}}, "interface.address", "prefix"),
    ({"interface": {"address": "10.0.2.15/24", "mac": "01:00:5e:00:00:01"}}, "interface.mac", "multicast"),
    ({"interface": {"address": "10.0.2.15/24", "mac": "52:54:00:12:34:56", "gateway": "10.9.9.9"}},
     "interface.gateway", "not on the interface's network"),
    ({"interface": {"address": "10.0.2.15/24", "mac": "52:54:00:12:34:56", "mtu": True}}, "interface.mtu", "expected int"),
    ({"services": {"ssh": {"port": 80}, "http": {"port": 80}}}, "services", "share a port"),
    ({"services": {"telnet": {"port": 23}}}, "services.telnet", "unknown field"),
    ({"services": {"ssh": {"ip_tos": 256}}}, "services.ssh.ip_tos", "0..255"),
    ({"services": {"ssh": {"ip_tos": "0x48"}}}, "services.ssh.ip_tos", "expected int"),
    ({"services": {"http": {"ip_tos": 0x4B}}}, "services.http.ip_tos", "ECN bits"),
    ({"services": {"ssh": {"tos": 0x48}}}, "services.ssh.tos", "unknown field"),
    ({"sysctls": {"net.ipv4.tcp_reflect_tos": 2}}, "sysctls.net.ipv4.tcp_reflect_tos", "0..1"),
    ({"sysctls": {"net.ipv4.ip_no_pmtu_disc": 256}}, "sysctls.net.ipv4.ip_no_pmtu_disc", "0..255"),
    ({"watchdog": {"timeout": 5, "daemon": True, "period": 5}}, "watchdog.period", "shorter than the timeout"),
    ({"watchdog": {"timeout": 0}}, "watchdog.timeout", "1..4294"),
    ({"hostname": "bad host"}, "hostname", "not a valid host name"),
])
def test_bad_field_is_named_with_the_source(over, field, words):
    with pytest.raises(ConfigError) as info:
        cfg(**over)
    assert str(info.value).startswith("fw.yaml: ") and field in str(info.value) and words in str(info.value)


def test_service_ip_tos_defaults_are_what_the_emulated_images_daemons_set():
    # dropbear's listensockets() -> set_sock_priority(LOWDELAY): IPTOS_DSCP_AF21; busybox httpd: none
    c = FirmwareConfig.default()
    assert (c.service("ssh").ip_tos, c.service("http").ip_tos) == (0x48, 0x00) == tuple(SERVICE_IP_TOS_DEFAULTS.values())


def test_declared_service_ip_tos_is_kept_and_round_trips():
    c = cfg(services={"ssh": {"port": 22, "ip_tos": 0x10}, "http": False})
    assert c.service("ssh").ip_tos == 0x10 and c.service("http").ip_tos == 0
    assert FirmwareConfig.from_dict(c.to_dict()) == c


def test_image_applies_ssh_ip_tos_zero_with_dropbears_z_flag():
    assert "dropbear -R -E -p 22 " in render_init(cfg())
    assert "dropbear -R -E -z -p 22 " in render_init(cfg(services={"ssh": {"ip_tos": 0}}))


@pytest.mark.parametrize("services, field", [({"ssh": {"ip_tos": 0x10}}, "services.ssh.ip_tos"),
                                             ({"http": {"ip_tos": 0x48}}, "services.http.ip_tos")])
def test_image_refuses_an_ip_tos_its_daemon_cannot_set(services, field):
    with pytest.raises(ImageBuildError, match=field):
        render_init(cfg(services=services))


def test_missing_interface_is_named():
    with pytest.raises(ConfigError, match="fw.yaml: interface: missing"):
        FirmwareConfig.from_dict({"hostname": "bmc"}, source="fw.yaml")


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
                    max_leaves=10))
def test_arbitrary_yaml_data_gives_a_config_or_a_config_error(data):
    try:
        FirmwareConfig.from_dict(data, source="fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml: ")
