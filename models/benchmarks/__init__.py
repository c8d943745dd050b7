"""Benchmarks as plain functions: episodes, analyses, statistics, tables and the report page."""
