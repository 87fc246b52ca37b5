//! The flow table's own tests: the table (install, hit, eviction, bounds,
//! counters), the action against the stages' rewrites, revalidation.
