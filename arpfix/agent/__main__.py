"""`python -m arpfix.agent ...` (same as `arpfix agent ...`)."""

from arpfix.agent.cli import agent

if __name__ == "__main__":
    agent(prog_name="arpfix agent")
