"""Medical Entity Tree (paper §3.2): entity extraction, tree construction, mapping."""
