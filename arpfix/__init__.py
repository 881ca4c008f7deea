"""arpfix: prepare real servers for Layer 4 Direct Routing load balancers, and prove it."""

__version__ = "0.1.0"
