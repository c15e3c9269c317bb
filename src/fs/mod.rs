//! The protocol-neutral filesystem core (placeholder).
