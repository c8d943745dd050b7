"""genie-flow models."""
