"""genie-flow tasks."""
