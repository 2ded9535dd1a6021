"""The pipeline's edges: AWS and database clients and the Flink connectors built on them."""
