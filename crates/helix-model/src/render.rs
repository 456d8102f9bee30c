//! Metadata rendering: any OTLP attribute value → the flat string stored in `metadata`.
