"""The live path: receive mirror traffic (AF_PACKET ring, raw GRE and UDP tunnel sockets),
decode it batch by batch, filter, and write rotating pcapng and/or stream it upstream."""
