"""The bundled DR-mode forwarding agent (docs/agent.md).

config (inventory -> what to serve) · scheduler (pure slot tables) · nft (the data plane) ·
afpacket (user-space fallback) · health · vip (probe, claim, announce) · arp · runner (the loop) ·
status · cli (`arpfix agent`).
"""
