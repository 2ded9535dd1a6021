"""Packaging and deployment of the Flink jobs to Managed Service for Apache Flink
(docs/deploy.md)."""
