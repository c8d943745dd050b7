"""genie-flow flows."""
