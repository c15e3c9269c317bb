//! Metadata in redb (placeholder).
