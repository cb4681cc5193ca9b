"""The reference stack model: Linux 6.1 on an AST2500, sans-IO, driven by explicit time.

Layers, each readable beside the kernel call graphs in ../shared/seeds/:
  wire/        Ethernet, ARP, IPv4, ICMP, TCP (with options), UDP: parse/emit, checksums
  socket.py    socket/bind/listen/connect/accept/send/recv/close/shutdown/setsockopt, tcp_v4_rcv
  tcp.py       TcpSock (RFC 793 states, Linux timers, RTT/RTO), RequestSock (SYN queue)
  ipv4.py      FIB, ip_queue_xmit, ip_fragment, ip_rcv, ICMP echo and unreachables
  neighbour.py ARP NUD states, arp_queue, arp_rcv, reachable-time windows
  ftgmac100.py TX/RX rings, NAPI, carrier gating, dev_watchdog
  phy.py       RTL8211E MDIO registers and phylib polling, phy_print_status
  watchdog.py  aspeed_wdt, the watchdog core, busybox's watchdog daemon
  board.py     Board (all of the above from a FirmwareConfig) and predict() -> Prediction
Time is int nanoseconds (clock.py); no layer reads a clock, sleeps or touches the host.
"""
