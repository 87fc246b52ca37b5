//! Tests holding the forms of a resource together.
