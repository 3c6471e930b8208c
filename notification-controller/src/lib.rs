//! Event ingestion, alerting and webhook receivers.
