"""The servers' supervision: the team's stack (PostgreSQL, MLflow, Prefect) with its members and secrets, the checks
that they answer before a night, and the temporary Prefect server of a process that has none."""
