"""The reference stack model: Linux 6.1 on an AST2500, sans-IO, driven by explicit time.

Layers, each readable beside the kernel call graphs in ../shared/seeds/:
  wire/        Ethernet, ARP, IPv4, ICMP, TCP (with options), UDP: parse/emit, checksums
  socket.py    socket/bind/listen/connect/accept/send/recv/close/shutdown/setsockopt
  tcp_ipv4.py  tcp_v4_rcv, tcp_v4_err, the listener's side of the passive open, socket timers
  tcp.py       TcpSock (tcp.c), made of tcp_input.py, tcp_output.py, tcp_recovery.py,
               tcp_timer.py and tcp_minisocks.py, one module per net/ipv4 file; tcp_h.py
               is include/net/tcp.h; inet_connection_sock.py (the Listener, its SYN and
               accept queues), syncookies.py, tcp_cubic.py
  ipv4.py      FIB, ip_queue_xmit, ip_fragment, ip_rcv, ICMP echo and unreachables
  neighbour.py ARP NUD states, arp_queue, arp_rcv, reachable-time windows
  ftgmac100.py TX/RX rings, NAPI, carrier gating, dev_watchdog
  phy.py       RTL8211E MDIO registers and phylib polling, phy_print_status
  watchdog.py  aspeed_wdt, the watchdog core, busybox's watchdog daemon
  board.py     Board (all of the above from a FirmwareConfig) and predict() -> Prediction
Time is int nanoseconds (clock.py); no layer reads a clock, sleeps or touches the host.
"""
