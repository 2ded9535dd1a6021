"""The batch side of the pipeline (seed design, sections 4 and 6): POS batches into Aurora
every 15 minutes (``etl.pos_ingestion``), Aurora to S3 staging to the warehouse and the
curated lake every hour (``etl.hourly``), and recomputing history from staging after a
logic fix (``etl.reprocess``)."""
